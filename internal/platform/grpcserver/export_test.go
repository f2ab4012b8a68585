package grpcserver

// ObserveStages makes every stage of the chain report the calls it sees to observe, in order.
func ObserveStages(cfg *Config, observe func(method, stage string)) { cfg.observe = observe }
