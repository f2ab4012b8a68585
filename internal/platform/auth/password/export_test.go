package password

// SetDerive replaces the key derivation of h, so that tests can observe how many run at once.
func SetDerive(h *Hasher, f func(password, salt []byte, p Params) []byte) { h.derive = f }
