package daemon

import (
	"github.com/hostlb/hostlb/daemon/config"
)

// unservedKeys lists the configuration this version accepts (the schema is
// SPEC §4's, so a file written for a later version still loads) but does
// not act on yet, each with what happens instead. A key that is accepted
// and silently ignored is a trap: the daemon logs each one at start and on
// every reload.
func unservedKeys(_ *config.Config) [][2]string {
	var out [][2]string // none now: [metrics] listen and [control] socket were the last
	return out
}

// logUnserved warns about every key of unservedKeys.
func (d *Daemon) logUnserved(cfg *config.Config) {
	for _, k := range unservedKeys(cfg) {
		d.log.Warn("configured but not served by this version", "key", k[0], "effect", k[1])
	}
}
