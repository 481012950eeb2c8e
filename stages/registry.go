package stages

import (
	"fmt"
	"sort"
)

// Registry is a set of stage kinds by name. cmd/pipe builds one with the
// built-in kinds; each test builds its own. A Registry is not safe for
// concurrent Register calls; lookups may run concurrently once built.
type Registry struct {
	defs map[string]*Definition
}

// NewRegistry returns a registry holding defs, or an error on a duplicate
// or invalid definition.
func NewRegistry(defs ...*Definition) (*Registry, error) {
	r := &Registry{defs: map[string]*Definition{}}
	for _, d := range defs {
		if err := r.Register(d); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds d. It fails on a duplicate name or a definition without a
// name, version or constructor.
func (r *Registry) Register(d *Definition) error {
	switch {
	case d == nil || d.Name == "":
		return fmt.Errorf("stage definition without a name")
	case d.Version == "":
		return fmt.Errorf("stage kind %q has no version", d.Name)
	case d.New == nil:
		return fmt.Errorf("stage kind %q has no constructor", d.Name)
	}
	if _, dup := r.defs[d.Name]; dup {
		return fmt.Errorf("stage kind %q registered twice", d.Name)
	}
	r.defs[d.Name] = d
	return nil
}

// Lookup returns the definition of kind name.
func (r *Registry) Lookup(name string) (*Definition, bool) {
	d, ok := r.defs[name]
	return d, ok
}

// Names returns every kind name, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.defs))
	for n := range r.defs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
