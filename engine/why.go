package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pipeml/pipe/artifacts"
)

// maxWhy bounds the number of reasons listed for one stage.
const maxWhy = 8

// why compares the parts of a new key with those of the stage's last
// successful run and says what changed.
func (pl *Plan) why(prev *StageState, cur *keyInfo) []string {
	if prev == nil {
		return []string{"never run in this workspace"}
	}
	var out []string
	add := func(format string, args ...any) {
		if len(out) < maxWhy {
			out = append(out, fmt.Sprintf(format, args...))
		} else if len(out) == maxWhy {
			out = append(out, "and more")
		}
	}
	p, c := prev.Parts, cur.parts
	if p.Kind != c.Kind {
		add("stage kind changed (%s → %s)", p.Kind, c.Kind)
	}
	if p.Version != c.Version {
		add("stage version changed (%s → %s)", p.Version, c.Version)
	}
	for _, k := range unionKeys(p.Params, c.Params) {
		a, b := compactJSON(p.Params[k]), compactJSON(c.Params[k])
		if a != b {
			x, y := diffContext(a, b)
			add("parameter %s changed (%s → %s)", k, x, y)
		}
	}
	for _, k := range unionKeys(p.Extra, c.Extra) {
		if p.Extra[k] != c.Extra[k] {
			add("%s changed", k)
		}
	}
	type ik struct{ name, path string }
	old := map[ik]InputState{}
	for _, in := range p.Inputs {
		old[ik{in.Name, in.Path}] = in
	}
	seen := map[ik]bool{}
	for _, in := range c.Inputs {
		k := ik{in.Name, in.Path}
		seen[k] = true
		o, ok := old[k]
		switch {
		case !ok:
			add("input %s: %s added", in.Name, pl.rel(in.Path))
		case o.Digest != in.Digest && in.Stage != "":
			add("input %s: output of stage %s changed", in.Name, in.Stage)
		case o.Digest != in.Digest && in.Dir && o.Manifest != "" && cur.manifests[in.Path] != nil:
			for _, s := range pl.manifestDiff(o.Manifest, cur.manifests[in.Path]) {
				add("input %s: %s", in.Name, s)
			}
		case o.Digest != in.Digest:
			add("input %s: %s changed", in.Name, pl.rel(in.Path))
		}
	}
	for _, in := range p.Inputs {
		if !seen[ik{in.Name, in.Path}] {
			add("input %s: %s removed", in.Name, pl.rel(in.Path))
		}
	}
	for _, k := range unionKeys(p.Refs, c.Refs) {
		if p.Refs[k] != c.Refs[k] {
			add("referenced output %s changed", k)
		}
	}
	if len(out) == 0 {
		if prev.Key == cur.key {
			out = append(out, "cache entry missing or corrupt")
		} else {
			out = append(out, "action key changed (cache format)")
		}
	}
	return out
}

// manifestDiff names the files that differ between a stored manifest and
// the current one: each file when there are few, counts and the first
// names otherwise.
func (pl *Plan) manifestDiff(oldDigest artifacts.Digest, cur *artifacts.Manifest) []string {
	om, err := pl.Workspace.Cache.ReadManifest(oldDigest)
	if err != nil {
		return []string{"folder changed"}
	}
	o := make(map[string]artifacts.Digest, len(om.Entries))
	for _, e := range om.Entries {
		o[e.Path] = e.Digest
	}
	var added, changed, removed []string
	for _, e := range cur.Entries {
		d, ok := o[e.Path]
		if !ok {
			added = append(added, e.Path)
		} else if d != e.Digest {
			changed = append(changed, e.Path)
		}
		delete(o, e.Path)
	}
	for p := range o {
		removed = append(removed, p)
	}
	sort.Strings(removed)
	var out []string
	if len(added)+len(changed)+len(removed) <= 3 {
		for _, p := range added {
			out = append(out, p+" added")
		}
		for _, p := range changed {
			out = append(out, p+" changed")
		}
		for _, p := range removed {
			out = append(out, p+" removed")
		}
	} else {
		for _, g := range []struct {
			what  string
			paths []string
		}{{"added", added}, {"changed", changed}, {"removed", removed}} {
			switch n := len(g.paths); {
			case n == 1:
				out = append(out, g.paths[0]+" "+g.what)
			case n > 1:
				names := strings.Join(g.paths[:min(n, 2)], ", ")
				if n > 2 {
					names += ", …"
				}
				out = append(out, fmt.Sprintf("%d files %s (%s)", n, g.what, names))
			}
		}
	}
	if len(out) == 0 {
		out = append(out, "folder changed")
	}
	return out
}

// storeInputManifests keeps the manifests of folder inputs in the cache,
// so that a later plan can say which file changed.
func (pl *Plan) storeInputManifests(ki *keyInfo) {
	for i := range ki.parts.Inputs {
		in := &ki.parts.Inputs[i]
		m := ki.manifests[in.Path]
		if m == nil {
			continue
		}
		b, err := m.Marshal()
		if err != nil {
			continue
		}
		if d, err := pl.Workspace.Cache.PutBytes(b); err == nil {
			in.Manifest = d
		}
	}
}

func (pl *Plan) rel(p string) string {
	if r, err := filepath.Rel(pl.Root, p); err == nil {
		return r
	}
	return p
}

// compactJSON returns b compacted and without HTML escapes, so that
// values stored indented compare equal to fresh ones.
func compactJSON(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return strings.TrimSpace(buf.String())
}

// diffContext shortens two different strings around their first
// difference.
func diffContext(a, b string) (string, string) {
	const width = 40
	if a == "" {
		a = "unset"
	}
	if b == "" {
		b = "unset"
	}
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	cut := func(s string) string {
		start := max(0, i-12)
		prefix := ""
		if start > 0 {
			prefix = "…"
		}
		s = s[start:]
		if len(s) > width {
			s = s[:width] + "…"
		}
		return prefix + strings.ToValidUTF8(s, "")
	}
	return cut(a), cut(b)
}

func unionKeys[V any](a, b map[string]V) []string {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return sortedKeys(m)
}
