package dispatch

import (
	"context"
	"io"
	"time"

	"lastmile/internal/geo"
)

// UploadState is where a proof upload is in its life.
type UploadState string

// The upload states. Only IN_PROGRESS uploads change, except that a COMMITTED upload nobody attached is
// discarded (EXPIRED) after UploadRetention.
const (
	UploadInProgress UploadState = "in_progress"
	UploadCommitted  UploadState = "committed"
	UploadRejected   UploadState = "rejected"
	UploadExpired    UploadState = "expired"
)

// Valid reports whether s is one of the defined upload states.
func (s UploadState) Valid() bool {
	switch s {
	case UploadInProgress, UploadCommitted, UploadRejected, UploadExpired:
		return true
	}
	return false
}

// Upload limits and lifetimes.
const (
	// DefaultMaxUploadBytes is the largest proof file by default: the contract's 10 MiB.
	DefaultMaxUploadBytes = 10 << 20
	// MaxChunkBytes is the largest chunk of an upload, as the contract allows.
	MaxChunkBytes = 1 << 20
	// UploadRetention is how long an IN_PROGRESS upload lives without a new chunk, and how long a
	// COMMITTED upload nobody attached to its task is kept.
	UploadRetention = 24 * time.Hour
	// UploadWriterLease is how long a stream holds the right to write an upload without writing: a
	// stream whose process died without releasing it blocks a resume for at most this long.
	UploadWriterLease = time.Minute
	// UploadPurgeAfter is how long the records of discarded (REJECTED, EXPIRED) uploads are kept, so that a
	// resume of one is answered FAILED_PRECONDITION rather than starting afresh.
	UploadPurgeAfter = 7 * 24 * time.Hour
)

// DefaultAllowedContentTypes are the proof files' MIME types accepted by default. A signature may only
// be image/png; a photo any of them.
var DefaultAllowedContentTypes = []string{"image/jpeg", "image/png", "image/webp"}

// Upload is a proof file being sent, or sent, with UploadProof.
type Upload struct {
	// ID is chosen by the app (a UUID) or the server when the upload starts.
	ID     string
	TaskID string
	// CourierID is the courier who started the upload; only they may write, resume and attach it.
	CourierID   string
	Kind        ProofKind
	ContentType string
	SizeBytes   int64
	// CommittedOffset is how many bytes are durably stored: where the next chunk must start.
	CommittedOffset int64
	// SHA256 is the declared hash of the whole file, 64 lowercase hexadecimal characters.
	SHA256          string
	State           UploadState
	SignerName      string
	CaptureTime     time.Time
	CaptureLocation *geo.LatLng
	CreateTime      time.Time
	UpdateTime      time.Time
	// ExpireTime is when an IN_PROGRESS upload is discarded unless resumed; zero in the other states.
	ExpireTime time.Time
	// Writer is the stream that holds the right to write the upload until WriterUntil; empty for none.
	Writer      string
	WriterUntil time.Time
	// AttachTime is when a command first cited the (COMMITTED) upload as a proof; zero while none did.
	// An attached upload is never discarded.
	AttachTime time.Time
}

// UploadCounts counts a task's uploads by the courier who made them (Upload.CourierID), then by state.
type UploadCounts map[string]map[UploadState]int

// UploadStore keeps proof uploads' metadata. Implementation: sqlstore.Uploads on SQLite and PostgreSQL.
type UploadStore interface {
	// CreateUpload counts the uploads of u's task by courier and state (a courier or state without
	// uploads is absent), hands the counts to admit (the domain's limit) and inserts u when admit returns
	// nil; admit's error is returned as it is and nothing is written. Concurrent creates for one task are
	// serialised, so the counts admit sees are the ones the insert commits against. Conflict when an
	// upload with u.ID exists.
	CreateUpload(ctx context.Context, u Upload, admit func(counts UploadCounts) error) error
	// GetUpload returns the upload with id. NotFound when there is none.
	GetUpload(ctx context.Context, id string) (Upload, error)
	// UpdateUpload locks the upload with id, runs fn on it and writes what fn returns, in one
	// transaction. When fn fails nothing is written and its error is returned. NotFound when there is no
	// such upload. The id, task and courier of an upload never change.
	UpdateUpload(ctx context.Context, id string, fn func(Upload) (Upload, error)) (Upload, error)
	// SweepableUploads returns up to limit uploads to discard: IN_PROGRESS ones whose ExpireTime is at or
	// before now, and COMMITTED ones never attached whose UpdateTime is at or before committedBefore.
	SweepableUploads(ctx context.Context, now, committedBefore time.Time, limit int) ([]Upload, error)
	// PurgeUploads deletes the records of REJECTED and EXPIRED uploads last updated before before, and
	// returns how many it deleted.
	PurgeUploads(ctx context.Context, before time.Time) (int64, error)
	// EndWriters ends the writer leases of IN_PROGRESS uploads that run out before before (Writer
	// emptied, WriterUntil zero), and returns how many it ended.
	EndWriters(ctx context.Context, before time.Time) (int, error)
}

// Blobs keeps proof uploads' bytes, one growing file per upload. Implementations: blob.Files (a
// directory) and blob.Postgres (a table every replica reads).
type Blobs interface {
	// Append writes data at offset of uploadID's bytes, creating them at offset 0. It first drops any
	// byte at or beyond offset, so a chunk retried at the same offset (its first write was stored but
	// never acknowledged) replaces itself. It returns once the bytes are durable. An error when fewer than
	// offset bytes are stored.
	Append(ctx context.Context, uploadID string, offset int64, data []byte) error
	// Open returns a reader of every byte of uploadID and their count. NotFound when there are none.
	Open(ctx context.Context, uploadID string) (io.ReadCloser, int64, error)
	// Delete removes uploadID's bytes; deleting bytes that do not exist is not an error.
	Delete(ctx context.Context, uploadID string) error
}
