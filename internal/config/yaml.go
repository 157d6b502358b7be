package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decodeYAML walks the document node by node instead of using
// Decoder.KnownFields, which stops at the first unknown key: here every
// unknown key and bad value is reported with its dotted path and line.
func decodeYAML(data []byte, cfg *Config) (errs []error) {
	defer func() {
		// The parser is third-party code fed arbitrary bytes; a bug in it
		// must become a config error, not a crash.
		if r := recover(); r != nil {
			errs = append(errs, fmt.Errorf("config: cannot parse YAML: %v", r))
		}
	}()
	// Several documents are an error, but an empty one (a trailing ---) is
	// harmless.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root *yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return []error{fmt.Errorf("config: %w", err)}
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue
		}
		if root != nil {
			return []error{fmt.Errorf("config: more than one YAML document (another starts at line %d); tokengate reads one", doc.Line)}
		}
		root = doc.Content[0]
	}
	if root == nil {
		return nil // empty file: defaults
	}
	d := &decoder{origin: cfg.origin, budget: maxYAMLKeys}
	d.section(root, reflect.ValueOf(cfg).Elem(), "", 0)
	return d.errs
}

// Bounds on what merge keys (<<: *anchor) can make the decoder walk: a
// self-referencing merge, or merges of merges that multiply the key count.
const (
	maxYAMLKeys  = 10000
	maxYAMLDepth = 16
)

type decoder struct {
	origin map[string]string
	errs   []error
	budget int  // keys and mappings left to visit
	broke  bool // a bound was hit; stop
}

func (d *decoder) fail(key string, line int, format string, args ...any) {
	d.errs = append(d.errs, &fieldError{Key: key, Origin: lineOrigin(line), Msg: fmt.Sprintf(format, args...)})
}

// deref follows aliases (a chain is possible: an anchor on an alias).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", shorten(n.Value))
	}
	return "an alias"
}

// shorten keeps error messages readable when a value is long.
func shorten(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// displayKey prints a key as written, or quoted when it is not plain text
// (a newline in a key must not split an error message).
func displayKey(k string) string {
	if q := strconv.Quote(k); q[1:len(q)-1] != k || k == "" {
		return shorten(q)
	}
	return shorten(k)
}

// section decodes a mapping into the struct v whose keys start with prefix
// ("" at the top, "tokens." below). A null section keeps the defaults.
// depth counts nested merges.
func (d *decoder) section(n *yaml.Node, v reflect.Value, prefix string, depth int) {
	n = deref(n)
	if isNull(n) || d.broke {
		return
	}
	name := strings.TrimSuffix(prefix, ".")
	if name == "" {
		name = "config"
	}
	if n.Kind != yaml.MappingNode {
		d.fail(name, n.Line, "expected a mapping of keys, got %s", kindName(n))
		return
	}
	if depth > maxYAMLDepth {
		d.fail(name, n.Line, "merge keys (<<) nest more than %d deep", maxYAMLDepth)
		d.broke = true
		return
	}
	if d.budget--; d.budget < 0 {
		d.fail(name, n.Line, "more than %d keys and mappings once merge keys (<<) are expanded", maxYAMLKeys)
		d.broke = true
		return
	}
	// Merge keys first, so that the mapping's own keys win.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); isMerge(k) {
			d.merge(n.Content[i+1], v, prefix, depth+1)
		}
	}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if isMerge(k) {
			continue
		}
		if d.budget--; d.budget < 0 {
			d.fail(name, k.Line, "more than %d keys and mappings once merge keys (<<) are expanded", maxYAMLKeys)
			d.broke = true
			return
		}
		if k.Kind == yaml.ScalarNode {
			if first, dup := firstLine[k.Value]; dup {
				d.errs = append(d.errs, &fieldError{Key: prefix + displayKey(k.Value), Origin: lineOrigin(k.Line),
					Msg: "duplicate key", Hint: fmt.Sprintf("first at line %d", first)})
				continue
			}
			firstLine[k.Value] = k.Line
		}
		d.key(k, n.Content[i+1], v, prefix, depth)
	}
}

func isMerge(k *yaml.Node) bool { return k.Kind == yaml.ScalarNode && k.Tag == "!!merge" }

func (d *decoder) merge(val *yaml.Node, v reflect.Value, prefix string, depth int) {
	val = deref(val)
	if val.Kind != yaml.SequenceNode {
		d.section(val, v, prefix, depth)
		return
	}
	// In a list of merged mappings the earlier ones win: apply them last.
	for i := len(val.Content) - 1; i >= 0; i-- {
		d.section(val.Content[i], v, prefix, depth)
	}
}

func (d *decoder) key(k, val *yaml.Node, v reflect.Value, prefix string, depth int) {
	if k.Kind != yaml.ScalarNode {
		d.fail(prefix+"?", k.Line, "a key must be a plain name, got %s", kindName(k))
		return
	}
	path := prefix + k.Value
	f, ok := fieldByYAMLName(v.Type(), k.Value)
	if !ok {
		e := &fieldError{Key: prefix + displayKey(k.Value), Origin: lineOrigin(k.Line), Msg: "unknown key"}
		if s := suggest(k.Value, yamlNames(v.Type())); s != "" {
			e.Hint = fmt.Sprintf("did you mean %q?", s)
		}
		d.errs = append(d.errs, e)
		return
	}
	fv := v.FieldByIndex(f.Index)
	if f.Type.Kind() == reflect.Struct {
		d.section(val, fv, path+".", depth)
		return
	}
	d.origin[path] = lineOrigin(k.Line)
	d.value(val, fv, path)
}

// value decodes a leaf: a scalar or a list of strings.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = deref(n)
	if isNull(n) {
		v.SetZero() // `audience:` with nothing after it means empty
		return
	}
	if v.Type() == reflect.TypeFor[[]string]() {
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, "expected a list like [a, b], got %s", kindName(n))
			return
		}
		if d.budget -= len(n.Content); d.budget < 0 {
			d.fail(path, n.Line, "more than %d keys and list items once merge keys (<<) are expanded", maxYAMLKeys)
			d.broke = true
			return
		}
		var list []string
		for i, item := range n.Content {
			item = deref(item)
			key := fmt.Sprintf("%s[%d]", path, i)
			if item.Kind != yaml.ScalarNode || isNull(item) {
				d.fail(key, item.Line, "expected a string, got %s", kindName(item))
				continue
			}
			d.origin[key] = lineOrigin(item.Line)
			list = append(list, item.Value)
		}
		v.Set(reflect.ValueOf(list))
		return
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct {
		d.mappings(n, v, path)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, "expected %s, got %s", typeName(v.Type()), kindName(n))
		return
	}
	if err := setScalar(v, n.Value); err != nil {
		d.errs = append(d.errs, &fieldError{Key: path, Origin: lineOrigin(n.Line), Msg: err.msg, Hint: err.hint})
	}
}

// maxListMappings bounds a list of mappings such as access.rules.
const maxListMappings = 1000

// mappings decodes a list of mappings (access.rules) into the slice v,
// each item's keys named path[i].key.
func (d *decoder) mappings(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(path, n.Line, "expected a list of mappings, got %s", kindName(n))
		return
	}
	if len(n.Content) > maxListMappings {
		d.fail(path, n.Line, "more than %d items", maxListMappings)
		return
	}
	if len(n.Content) == 0 {
		v.SetZero() // rules: [] is no rules, as the default
		return
	}
	list := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		item = deref(item)
		key := fmt.Sprintf("%s[%d]", path, i)
		d.origin[key] = lineOrigin(item.Line)
		if isNull(item) || item.Kind != yaml.MappingNode {
			d.fail(key, item.Line, "expected a mapping of keys, got %s", kindName(item))
			continue
		}
		d.section(item, list.Index(i), key+".", 0)
	}
	v.Set(list)
}

func fieldByYAMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func yamlNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration like "90s"`
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "an integer"
	case t.Kind() == reflect.Float64:
		return "a number"
	}
	return "a string"
}

// valueError is a bad value: msg says what, hint how to fix it.
type valueError struct{ msg, hint string }

func (e *valueError) Error() string {
	if e.hint == "" {
		return e.msg
	}
	return e.msg + "; " + e.hint
}

// setScalar parses s into v (string, bool, int, int64, float64 or time.Duration); the
// YAML decoder and the environment share it, so both accept the same text.
func setScalar(v reflect.Value, s string) *valueError {
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(s)
		if err != nil {
			if n, nerr := strconv.ParseInt(s, 10, 64); nerr == nil {
				return &valueError{fmt.Sprintf("invalid duration %q", s), fmt.Sprintf("a unit is required, e.g. \"%ds\"", n)}
			}
			return &valueError{fmt.Sprintf("invalid duration %q", shorten(s)), "use Go durations: 500ms, 90s, 15m, 1h"}
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return &valueError{fmt.Sprintf("invalid boolean %q", shorten(s)), "use true or false"}
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int, v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return &valueError{msg: fmt.Sprintf("invalid integer %q", shorten(s))}
		}
		v.SetInt(n)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return &valueError{msg: fmt.Sprintf("invalid number %q", shorten(s))}
		}
		v.SetFloat(f)
	default:
		return &valueError{msg: fmt.Sprintf("unsupported type %s", v.Type())} // a new field type needs a case here
	}
	return nil
}
