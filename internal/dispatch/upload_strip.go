package dispatch

import (
	"bytes"
	"encoding/binary"
)

// A photo taken by a courier's phone carries metadata that is none of the customer's business: the
// device's make, model and serial number, the GPS position, the owner's name, thumbnails. stripMetadata
// removes it before a proof is shown to a customer, keeping what displaying the image needs (a JPEG's
// JFIF, ICC and Adobe segments and its orientation; a PNG's and a WebP's image chunks). A file it cannot
// parse is returned unchanged: the uploaded bytes were sniffed as the declared type at Finish, and a
// proof the customer cannot see is worse than one with metadata.

// stripMetadata returns b, a file of contentType, without its metadata (see above).
func stripMetadata(contentType string, b []byte) []byte {
	var out []byte
	var ok bool
	switch contentType {
	case "image/jpeg":
		out, ok = stripJPEG(b)
	case "image/png":
		out, ok = stripPNG(b)
	case "image/webp":
		out, ok = stripWebP(b)
	}
	if !ok {
		return b
	}
	return out
}

// stripJPEG drops every APPn segment but APP0 (JFIF), APP2 (ICC profile) and APP14 (Adobe colour
// transform), and every comment, from the segments before the first scan; an APP1 Exif segment is
// replaced by a minimal one holding only the orientation, when it had one.
func stripJPEG(b []byte) ([]byte, bool) {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return nil, false
	}
	out := make([]byte, 0, len(b))
	out = append(out, 0xFF, 0xD8)
	i := 2
	for {
		if i+1 >= len(b) || b[i] != 0xFF {
			return nil, false
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0xD9 || m == 0x01 || (m >= 0xD0 && m <= 0xD7): // no length
			out = append(out, b[i:i+2]...)
			i += 2
			continue
		case m == 0xDA: // start of scan: the image data follows, copied as is
			return append(out, b[i:]...), true
		}
		if i+4 > len(b) {
			return nil, false
		}
		end := i + 2 + int(binary.BigEndian.Uint16(b[i+2:i+4]))
		if end > len(b) || end < i+4 {
			return nil, false
		}
		seg := b[i:end]
		switch {
		case m == 0xE1:
			if o, found := exifOrientation(seg[4:]); found {
				out = append(out, orientationSegment(o)...)
			}
		case (m >= 0xE3 && m <= 0xEF && m != 0xEE) || m == 0xFE:
			// vendor metadata and comments: dropped
		default:
			out = append(out, seg...)
		}
		i = end
	}
}

// exifOrientation returns the Orientation tag (0x0112) of IFD0 of an APP1 payload, when it is Exif.
func exifOrientation(p []byte) (uint16, bool) {
	if !bytes.HasPrefix(p, []byte("Exif\x00\x00")) {
		return 0, false
	}
	t := p[6:]
	if len(t) < 8 {
		return 0, false
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0, false
	}
	ifd := int(bo.Uint32(t[4:8]))
	if ifd < 8 || ifd+2 > len(t) {
		return 0, false
	}
	n := int(bo.Uint16(t[ifd : ifd+2]))
	for k := range n {
		e := ifd + 2 + 12*k
		if e+12 > len(t) {
			return 0, false
		}
		if bo.Uint16(t[e:e+2]) == 0x0112 && bo.Uint16(t[e+2:e+4]) == 3 {
			o := bo.Uint16(t[e+8 : e+10])
			return o, o >= 1 && o <= 8
		}
	}
	return 0, false
}

// orientationSegment returns an APP1 Exif segment whose IFD0 holds only Orientation o.
func orientationSegment(o uint16) []byte {
	tiff := []byte{
		'M', 'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08, // big-endian, IFD0 at 8
		0x00, 0x01, // one entry
		0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, byte(o >> 8), byte(o), 0x00, 0x00, // Orientation, SHORT, 1
		0x00, 0x00, 0x00, 0x00, // no next IFD
	}
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	return append(seg, payload...)
}

// pngMetadata are the PNG chunk types dropped: Exif, text, and the modification time.
var pngMetadata = map[string]bool{"eXIf": true, "tEXt": true, "zTXt": true, "iTXt": true, "tIME": true}

// stripPNG drops the metadata chunks of a PNG.
func stripPNG(b []byte) ([]byte, bool) {
	const sig = "\x89PNG\r\n\x1a\n"
	if !bytes.HasPrefix(b, []byte(sig)) {
		return nil, false
	}
	out := make([]byte, 0, len(b))
	out = append(out, sig...)
	for i := len(sig); i < len(b); {
		if i+8 > len(b) {
			return nil, false
		}
		end := i + 12 + int(binary.BigEndian.Uint32(b[i:i+4]))
		if end > len(b) || end < i+12 {
			return nil, false
		}
		if !pngMetadata[string(b[i+4:i+8])] {
			out = append(out, b[i:end]...)
		}
		i = end
	}
	return out, true
}

// stripWebP drops the EXIF and XMP chunks of a WebP and clears their flags in its VP8X header.
func stripWebP(b []byte) ([]byte, bool) {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return nil, false
	}
	out := make([]byte, 12, len(b))
	copy(out, b[:12])
	for i := 12; i < len(b); {
		if i+8 > len(b) {
			return nil, false
		}
		size := int(binary.LittleEndian.Uint32(b[i+4 : i+8]))
		end := i + 8 + size + size%2
		if end > len(b) || size < 0 || end < i+8 {
			return nil, false
		}
		switch string(b[i : i+4]) {
		case "EXIF", "XMP ":
		case "VP8X":
			if size < 1 {
				return nil, false
			}
			start := len(out)
			out = append(out, b[i:end]...)
			out[start+8] &^= 0x08 | 0x04 // the EXIF and XMP flags
		default:
			out = append(out, b[i:end]...)
		}
		i = end
	}
	binary.LittleEndian.PutUint32(out[4:8], uint32(len(out)-8))
	return out, true
}
