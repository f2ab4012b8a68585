package dispatch

// UploadStore keeps proof uploads' metadata (the uploads helper defines its methods).
type UploadStore interface{}

// Blobs keeps proof uploads' bytes (the uploads helper defines its methods).
type Blobs interface{}
