package config

import (
	"reflect"
	"strconv"
	"strings"
	"time"
)

// fieldError is one problem with one key. It prints as
// `tokens.ttl: invalid duration "soon" (line 4)`.
type fieldError struct {
	Key    string // dotted path, maybe with an index: public_paths[1]
	Origin string // "line 4", "TOKENGATE_TOKENS_TTL" or ""
	Msg    string
	Hint   string // e.g. `did you mean "algorithm"?`
}

func (e *fieldError) Error() string {
	s := e.Key + ": " + e.Msg
	switch {
	case e.Origin == "":
	case strings.HasPrefix(e.Origin, envPrefix):
		s += " (from " + e.Origin + ")"
	default:
		s += " (" + e.Origin + ")"
	}
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

func lineOrigin(line int) string { return "line " + strconv.Itoa(line) }

// A configKey is one leaf of Config, found by reflection over the yaml tags.
type configKey struct {
	path  string // dotted: tokens.ttl
	index []int  // reflect field index path from Config
	typ   reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// configKeys lists every leaf key of Config in declaration order.
func configKeys() []configKey {
	var keys []configKey
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+name+".", idx)
				continue
			}
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				continue // a list of mappings (access.rules): the file only
			}
			keys = append(keys, configKey{path: prefix + name, index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return keys
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// envName is the variable that overrides key: tokens.ttl -> TOKENGATE_TOKENS_TTL.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}
