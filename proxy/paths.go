package proxy

import (
	"tokengate/access"
)

// The path classification is access's: the rules, the routes, public paths
// and query token paths all judge a request path the same way.
type pathClass = access.PathClass

const (
	pathClean   = access.PathClean
	pathUnclean = access.PathUnclean
	pathHostile = access.PathHostile
)

func classifyPath(path, rawPath string) pathClass { return access.ClassifyPath(path, rawPath) }

func isDotSegment(seg string) bool { return access.IsDotSegment(seg) }

func containsEncodedSlash(raw string) bool { return access.ContainsEncodedSlash(raw) }

func isCleanPath(p string) bool { return access.IsCleanPath(p) }

func cleanPublicPath(p string) (string, error) { return access.CleanPrefix(p) }

// publicPaths matches clean request paths against segment prefixes (query
// token paths).
type publicPaths []string

func newPublicPaths(paths []string) publicPaths {
	out := make(publicPaths, 0, len(paths))
	for _, p := range paths {
		c, err := cleanPublicPath(p)
		if err != nil {
			continue // validate reported it
		}
		out = append(out, c)
	}
	return out
}

// match reports whether path, which classifyPath called clean, lies under
// one of the prefixes by whole segments.
func (pp publicPaths) match(path string) bool {
	for _, p := range pp {
		if access.UnderPrefix(path, p) {
			return true
		}
	}
	return false
}
