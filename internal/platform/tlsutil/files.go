package tlsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// maxPEMFileSize bounds what is read from a certificate or key file: a PEM chain of a few certificates is a
// few kilobytes, and a misconfigured path pointing at a large file should fail rather than fill memory.
const maxPEMFileSize = 1 << 20

// readPEMFile reads a certificate or key file of at most maxPEMFileSize bytes.
func readPEMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxPEMFileSize {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, maxPEMFileSize)
	}
	return data, nil
}

// checkPrivateKeyMode refuses a private key that other users can read: such a key may already have leaked,
// and silently using (or tightening) it would hide that.
func checkPrivateKeyMode(path string) error {
	if runtime.GOOS == "windows" {
		// Windows protects files with ACLs; the permission bits Go reports there mean nothing.
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("private key %s is accessible by group or others (mode %#o): restrict it with chmod 600 or delete it to issue a new one", path, perm)
	}
	return nil
}

// exists reports whether path exists; errors other than "does not exist" are returned.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// writeFileAtomic replaces path with data so that readers, and a process restarted after a crash, see either
// the old content or the complete new one: it writes a temporary file in the same directory, syncs it, sets
// perm and renames it over path.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp creates the file with mode 0600, so a key is never readable by others, not even briefly.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable. It is best effort: some platforms and file systems cannot sync a
// directory, and the rename itself has already made the new file visible.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
