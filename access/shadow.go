package access

import (
	"fmt"
	"net/netip"
)

// Shadow is a configured rule that can never decide: an earlier rule (or a
// public path) matches every request it would match.
type Shadow struct {
	Index int    // the shadowed rule's position in Config.Rules
	Name  string // its name
	By    string // the earlier entry: "rules[0] admin", "public_paths[1] /static"
}

func (s Shadow) String() string {
	return fmt.Sprintf("access.rules[%d] (%s) can never match: %s covers every request it matches", s.Index, s.Name, s.By)
}

// Shadowed finds the configured rules an earlier entry shadows, in order,
// the way http.ServeMux finds conflicting patterns at registration: by
// comparing the patterns, not by trying requests. It errs towards silence:
// a rule is reported only when each of its conditions is provably covered.
func (rs *Rules) Shadowed() []Shadow {
	var out []Shadow
	for j := range rs.rules {
		later := &rs.rules[j]
		if later.index < 0 {
			continue // a public path: not a configured rule
		}
		for i := range j {
			if rs.rules[i].covers(later) {
				out = append(out, Shadow{Index: later.index, Name: later.name, By: rs.rules[i].source})
				break
			}
		}
	}
	return out
}

// covers reports whether every request r2 matches is matched by r.
func (r *rule) covers(r2 *rule) bool {
	if r.methods != 0 && (r2.methods == 0 || r2.methods&^r.methods != 0) {
		return false
	}
	if len(r.hosts) > 0 {
		if len(r2.hosts) == 0 {
			return false
		}
		for _, h2 := range r2.hosts {
			if !hostCovered(r.hosts, h2) {
				return false
			}
		}
	}
	if len(r.networks) > 0 {
		if len(r2.networks) == 0 {
			return false
		}
		for _, n2 := range r2.networks {
			if !networkCovered(r.networks, n2) {
				return false
			}
		}
	}
	if len(r.prefixes)+len(r.exact) == 0 {
		return true
	}
	if len(r2.prefixes)+len(r2.exact) == 0 {
		return false
	}
	for _, p2 := range r2.prefixes {
		if !prefixCovered(r.prefixes, p2) {
			return false
		}
	}
	for _, e2 := range r2.exact {
		if !prefixCovered(r.prefixes, e2) && !contains(r.exact, e2) {
			return false
		}
	}
	return true
}

func prefixCovered(prefixes []string, p string) bool {
	for _, pre := range prefixes {
		if UnderPrefix(p, pre) {
			return true
		}
	}
	return false
}

func hostCovered(hosts []host, h2 host) bool {
	for _, h := range hosts {
		switch {
		case h2.name == h.name && (h.suffix || !h2.suffix):
			return true
		case h.suffix && len(h2.name) > len(h.name) && h2.name[len(h2.name)-len(h.name)-1] == '.' &&
			h2.name[len(h2.name)-len(h.name):] == h.name:
			return true
		}
	}
	return false
}

func networkCovered(nets []netip.Prefix, n2 netip.Prefix) bool {
	for _, n := range nets {
		if n.Bits() <= n2.Bits() && n.Contains(n2.Addr()) {
			return true
		}
	}
	return false
}

// GroupRef is one group a rule names.
type GroupRef struct {
	Index int    // the rule's position in Config.Rules
	Item  int    // the position in its groups
	Group string // the name
}

// Groups lists every group the rules name, in order: check-config warns
// about those no user has.
func (rs *Rules) Groups() []GroupRef {
	var out []GroupRef
	for _, r := range rs.rules {
		for i, g := range r.groups {
			out = append(out, GroupRef{Index: r.index, Item: i, Group: g})
		}
	}
	return out
}
