package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// IndexFile is the name of the index of a sharded checkpoint.
const IndexFile = "model.safetensors.index.json"

// SingleFile is the name of an unsharded checkpoint's weights.
const SingleFile = "model.safetensors"

// Index is the content of model.safetensors.index.json.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// Set is a group of safetensors files opened together, such as the shards
// of one checkpoint; tensor names are unique across it.
type Set struct {
	files []*File
	where map[string]*File
	names []string
}

// OpenSet opens the given files as one set. A tensor name that appears in
// two files is an error.
func OpenSet(paths ...string) (*Set, error) {
	s := &Set{where: map[string]*File{}}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
		for _, name := range f.names {
			if other, dup := s.where[name]; dup {
				s.Close()
				return nil, fmt.Errorf("%s: tensor %q is also in %s", p, name, other.path)
			}
			s.where[name] = f
			s.names = append(s.names, name)
		}
	}
	slices.Sort(s.names)
	return s, nil
}

// OpenDir opens the weights of a checkpoint folder: the shards listed in
// model.safetensors.index.json when it exists (checking that every listed
// tensor is in the shard the index names), else model.safetensors.
func OpenDir(dir string) (*Set, error) {
	indexPath := filepath.Join(dir, IndexFile)
	data, err := os.ReadFile(indexPath)
	if errors.Is(err, os.ErrNotExist) {
		single := filepath.Join(dir, SingleFile)
		if _, err := os.Stat(single); err != nil {
			return nil, fmt.Errorf("%s: no %s or %s", dir, SingleFile, IndexFile)
		}
		return OpenSet(single)
	}
	if err != nil {
		return nil, err
	}
	var idx Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %v", indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: empty weight_map", indexPath)
	}
	var shards []string
	for _, shard := range idx.WeightMap {
		if filepath.Base(shard) != shard {
			return nil, fmt.Errorf("%s: shard name %q must be a file name in the same folder", indexPath, shard)
		}
		if !slices.Contains(shards, shard) {
			shards = append(shards, shard)
		}
	}
	slices.Sort(shards)
	paths := make([]string, len(shards))
	for i, shard := range shards {
		paths[i] = filepath.Join(dir, shard)
	}
	s, err := OpenSet(paths...)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(idx.WeightMap))
	for name := range idx.WeightMap {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f, ok := s.where[name]
		if !ok || filepath.Base(f.path) != idx.WeightMap[name] {
			s.Close()
			return nil, fmt.Errorf("%s: tensor %q is listed in shard %s but not found there", indexPath, name, idx.WeightMap[name])
		}
	}
	return s, nil
}

// Names returns all tensor names in sorted order.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Files returns the open files of the set.
func (s *Set) Files() []*File { return slices.Clone(s.files) }

// Tensor returns the named tensor, or nil and false.
func (s *Set) Tensor(name string) (*Tensor, bool) {
	f, ok := s.where[name]
	if !ok {
		return nil, false
	}
	return f.Tensor(name)
}

// Close closes every file of the set.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.files = nil
	s.where = nil
	return errors.Join(errs...)
}
