package simulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"google.golang.org/protobuf/types/known/timestamppb"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
)

// photo returns a small PNG, a parcel-brown square with a stripe whose shade varies by seed: a stand-in for
// the doorstep photo a courier app takes.
func photo(seed uint8) []byte {
	const size = 32
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	for y := range size {
		for x := range size {
			c := color.RGBA{R: 176, G: 128, B: 80, A: 255}
			if y > 12 && y < 18 {
				c = color.RGBA{R: seed, G: 200, B: 255 - seed, A: 255}
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img) // writing to memory cannot fail
	return buf.Bytes()
}

// uploadPhoto uploads a photo proof of taskID over UploadProof (start, one chunk, finish) and returns the
// committed upload's id.
func (b *courierBot) uploadPhoto(ctx context.Context, taskID string) (string, error) {
	// An upload under way finishes even when the run ends meanwhile (within the call timeout).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel() // ends the stream, whatever state it is in
	actx, err := b.acct.authed(ctx)
	if err != nil {
		return "", err
	}
	data := photo(uint8(b.rng.IntN(256)))
	sum := sha256.Sum256(data)
	p := b.position()
	stream, err := b.c.dispatch.UploadProof(actx)
	if err != nil {
		return "", fmt.Errorf("open UploadProof: %w", err)
	}
	exchange := func(req *dispatchv1.UploadProofRequest) (*dispatchv1.Upload, error) {
		if err := stream.Send(req); err != nil {
			_, rerr := stream.Recv()
			return nil, fmt.Errorf("send: %w", rerr)
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		return resp.GetUpload(), nil
	}
	up, err := exchange(&dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Start{Start: &dispatchv1.UploadStart{
		TaskId: taskID, Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO, ContentType: "image/png", SizeBytes: int64(len(data)),
		Sha256: hex.EncodeToString(sum[:]), CaptureTime: timestamppb.Now(), CaptureLocation: &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng}}}})
	if err != nil {
		return "", fmt.Errorf("upload start: %w", err)
	}
	if _, err := exchange(&dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Chunk{Chunk: &dispatchv1.UploadChunk{Offset: 0, Data: data}}}); err != nil {
		return "", fmt.Errorf("upload chunk: %w", err)
	}
	done, err := exchange(&dispatchv1.UploadProofRequest{Kind: &dispatchv1.UploadProofRequest_Finish{Finish: &dispatchv1.UploadFinish{}}})
	if err != nil {
		return "", fmt.Errorf("upload finish: %w", err)
	}
	if done.GetState() != dispatchv1.UploadState_UPLOAD_STATE_COMMITTED {
		return "", fmt.Errorf("upload %s ended %s, want COMMITTED", up.GetId(), done.GetState())
	}
	return done.GetId(), nil
}
