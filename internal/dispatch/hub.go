package dispatch

// hub fans the event feed out to this replica's courier sessions and task watchers (the session helper
// defines it).
type hub struct{}
