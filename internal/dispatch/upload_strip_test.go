package dispatch

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

func testImage() image.Image {
	img := image.NewRGBA(image.Rect(0, 0, 16, 8))
	for x := range 16 {
		for y := range 8 {
			img.Set(x, y, color.RGBA{uint8(x * 16), uint8(y * 32), 99, 255})
		}
	}
	return img
}

// exifSegment returns an APP1 Exif segment, little-endian, with Make, Orientation o and a GPS IFD pointer.
func exifSegment(o uint16) []byte {
	le := binary.LittleEndian
	tiff := []byte("II*\x00\x08\x00\x00\x00")
	entries := []struct {
		tag, typ uint16
		count    uint32
		value    uint32
	}{
		{0x010F, 2, 4, le.Uint32([]byte("ACM\x00"))}, // Make
		{0x0112, 3, 1, uint32(o)},                    // Orientation
		{0x8825, 4, 1, 0},                            // GPS IFD pointer
	}
	ifd := make([]byte, 2)
	le.PutUint16(ifd, uint16(len(entries)))
	for _, e := range entries {
		var b [12]byte
		le.PutUint16(b[0:], e.tag)
		le.PutUint16(b[2:], e.typ)
		le.PutUint32(b[4:], e.count)
		le.PutUint32(b[8:], e.value)
		ifd = append(ifd, b[:]...)
	}
	ifd = append(ifd, 0, 0, 0, 0)
	payload := append([]byte("Exif\x00\x00"), append(tiff, ifd...)...)
	payload = append(payload, []byte("SERIAL-123456 GPS 52.5200N 13.4050E")...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	return append(seg, payload...)
}

func segment(marker byte, payload string) []byte {
	seg := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	return append(seg, payload...)
}

func TestStripJPEG(t *testing.T) {
	var enc bytes.Buffer
	if err := jpeg.Encode(&enc, testImage(), nil); err != nil {
		t.Fatal(err)
	}
	plain := enc.Bytes()
	// Insert metadata after SOI: Exif with orientation 6, XMP, IPTC, a comment, and an ICC profile to keep.
	icc := segment(0xE2, "ICC_PROFILE\x00\x01\x01fake")
	var in []byte
	in = append(in, plain[:2]...)
	in = append(in, exifSegment(6)...)
	in = append(in, segment(0xE1, "http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>secret</x:xmpmeta>")...)
	in = append(in, segment(0xED, "Photoshop 3.0\x00secret")...)
	in = append(in, segment(0xFE, "secret comment")...)
	in = append(in, icc...)
	in = append(in, plain[2:]...)

	out := stripMetadata("image/jpeg", in)
	if bytes.Contains(out, []byte("secret")) || bytes.Contains(out, []byte("SERIAL")) || bytes.Contains(out, []byte("ACM")) {
		t.Fatalf("metadata left in the stripped JPEG")
	}
	var want []byte
	want = append(want, plain[:2]...)
	want = append(want, orientationSegment(6)...)
	want = append(want, icc...)
	want = append(want, plain[2:]...)
	if !bytes.Equal(out, want) {
		t.Fatalf("stripped JPEG is not SOI, the orientation, the ICC profile and the original image")
	}
	if o, ok := exifOrientation(orientationSegment(6)[4:]); !ok || o != 6 {
		t.Fatalf("orientation of the minimal segment = %d, %v; want 6", o, ok)
	}
	if _, err := jpeg.Decode(bytes.NewReader(out)); err != nil {
		t.Fatalf("decode stripped JPEG: %v", err)
	}
	// Without metadata nothing changes; a truncated file is returned as is.
	if got := stripMetadata("image/jpeg", plain); !bytes.Equal(got, plain) {
		t.Fatalf("a JPEG without metadata changed")
	}
	bad := in[:40]
	if got := stripMetadata("image/jpeg", bad); !bytes.Equal(got, bad) {
		t.Fatalf("a truncated JPEG changed")
	}
}

func pngChunk(typ, data string) []byte {
	b := make([]byte, 4, 12+len(data))
	binary.BigEndian.PutUint32(b, uint32(len(data)))
	b = append(b, typ...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE([]byte(typ+data)))
}

func TestStripPNG(t *testing.T) {
	var enc bytes.Buffer
	if err := png.Encode(&enc, testImage()); err != nil {
		t.Fatal(err)
	}
	plain := enc.Bytes()
	iend := len(plain) - 12
	var in []byte
	in = append(in, plain[:iend]...)
	in = append(in, pngChunk("tEXt", "Author\x00secret")...)
	in = append(in, pngChunk("eXIf", "MM\x00\x2asecret")...)
	in = append(in, pngChunk("tIME", "\x07\xea\x0b\x1e\x0c\x00\x00")...)
	in = append(in, plain[iend:]...)
	out := stripMetadata("image/png", in)
	if !bytes.Equal(out, plain) {
		t.Fatalf("stripped PNG (%d bytes) is not the original image (%d bytes)", len(out), len(plain))
	}
	if _, err := png.Decode(bytes.NewReader(out)); err != nil {
		t.Fatalf("decode stripped PNG: %v", err)
	}
	bad := in[:len(in)-3]
	if got := stripMetadata("image/png", bad); !bytes.Equal(got, bad) {
		t.Fatalf("a truncated PNG changed")
	}
}

func riffChunk(typ string, data []byte) []byte {
	b := append([]byte(typ), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(data)))
	b = append(b, data...)
	if len(data)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func webp(chunks ...[]byte) []byte {
	body := []byte("WEBP")
	for _, c := range chunks {
		body = append(body, c...)
	}
	return append(binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(body))), body...)
}

func TestStripWebP(t *testing.T) {
	vp8x := func(flags byte) []byte { return riffChunk("VP8X", []byte{flags, 0, 0, 0, 15, 0, 0, 7, 0, 0}) }
	bits := riffChunk("VP8L", []byte("\x2fimage-bits"))
	in := webp(vp8x(0x08|0x04|0x10), riffChunk("ICCP", []byte("icc")), bits, riffChunk("EXIF", []byte("secret exif")), riffChunk("XMP ", []byte("secret")))
	want := webp(vp8x(0x10), riffChunk("ICCP", []byte("icc")), bits)
	if out := stripMetadata("image/webp", in); !bytes.Equal(out, want) {
		t.Fatalf("stripped WebP = %q, want %q", out, want)
	}
	bad := in[:len(in)-4]
	if got := stripMetadata("image/webp", bad); !bytes.Equal(got, bad) {
		t.Fatalf("a truncated WebP changed")
	}
}

// FuzzStripMetadata feeds stripMetadata what a courier's app could upload: it never panics, never grows
// a file by more than the minimal orientation segment, and stripping twice is stripping once.
func FuzzStripMetadata(f *testing.F) {
	var j, p bytes.Buffer
	if err := jpeg.Encode(&j, testImage(), nil); err != nil {
		f.Fatal(err)
	}
	if err := png.Encode(&p, testImage()); err != nil {
		f.Fatal(err)
	}
	withExif := append(append(append([]byte{}, j.Bytes()[:2]...), exifSegment(3)...), j.Bytes()[2:]...)
	f.Add("image/jpeg", withExif)
	f.Add("image/png", p.Bytes())
	f.Add("image/webp", webp(riffChunk("VP8X", make([]byte, 10)), riffChunk("EXIF", []byte("x"))))
	f.Add("image/jpeg", []byte("\xff\xd8\xff\xe1\x00\x02\xff\xda"))
	f.Fuzz(func(t *testing.T, ct string, b []byte) {
		once := stripMetadata(ct, b)
		if len(once) > len(b)+len(orientationSegment(1)) {
			t.Fatalf("stripping grew %d bytes to %d", len(b), len(once))
		}
		if twice := stripMetadata(ct, once); !bytes.Equal(twice, once) {
			t.Fatalf("stripping twice differs from once")
		}
	})
}
