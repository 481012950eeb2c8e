package config

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Functions returns the functions available in pipeline.hcl. Paths are
// resolved against dir, the folder of the pipeline file; getenv reads the
// environment for env().
//
// Besides the usual string, collection, number and encoding functions of
// go-cty's stdlib (format, join, split, replace, lower, concat, merge,
// flatten, jsonencode, ...), they are:
//
//	glob(pattern)           sorted paths matching pattern; ** matches any depth
//	env(name[, default])    an environment variable (error if unset and no default)
//	file(path)              a file's content as a string
//	fileexists(path)        whether a file or folder exists
//	abspath(path)           the absolute path
//	basename(path), dirname(path), pathjoin(part...)
func Functions(dir string, getenv func(string) (string, bool)) map[string]function.Function {
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	str := func(name string) function.Parameter { return function.Parameter{Name: name, Type: cty.String} }
	fns := map[string]function.Function{
		"glob": function.New(&function.Spec{
			Params: []function.Parameter{str("pattern")},
			Type:   function.StaticReturnType(cty.List(cty.String)),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				matches, err := Glob(dir, args[0].AsString())
				if err != nil {
					return cty.NilVal, err
				}
				if len(matches) == 0 {
					return cty.ListValEmpty(cty.String), nil
				}
				vals := make([]cty.Value, len(matches))
				for i, m := range matches {
					vals[i] = cty.StringVal(m)
				}
				return cty.ListVal(vals), nil
			},
		}),
		"env": function.New(&function.Spec{
			Params:   []function.Parameter{str("name")},
			VarParam: &function.Parameter{Name: "default", Type: cty.String},
			Type:     function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				name := args[0].AsString()
				if v, ok := getenv(name); ok {
					return cty.StringVal(v), nil
				}
				if len(args) > 1 {
					return args[1], nil
				}
				return cty.NilVal, fmt.Errorf("environment variable %s is not set; set it or give a default: env(%q, \"...\")", name, name)
			},
		}),
		"file": function.New(&function.Spec{
			Params: []function.Parameter{str("path")},
			Type:   function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				b, err := os.ReadFile(resolve(args[0].AsString()))
				if err != nil {
					return cty.NilVal, err
				}
				return cty.StringVal(string(b)), nil
			},
		}),
		"fileexists": function.New(&function.Spec{
			Params: []function.Parameter{str("path")},
			Type:   function.StaticReturnType(cty.Bool),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				_, err := os.Stat(resolve(args[0].AsString()))
				return cty.BoolVal(err == nil), nil
			},
		}),
		"abspath": function.New(&function.Spec{
			Params: []function.Parameter{str("path")},
			Type:   function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				return cty.StringVal(resolve(args[0].AsString())), nil
			},
		}),
		"basename": function.New(&function.Spec{
			Params: []function.Parameter{str("path")},
			Type:   function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				return cty.StringVal(filepath.Base(args[0].AsString())), nil
			},
		}),
		"dirname": function.New(&function.Spec{
			Params: []function.Parameter{str("path")},
			Type:   function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				return cty.StringVal(filepath.Dir(args[0].AsString())), nil
			},
		}),
		"pathjoin": function.New(&function.Spec{
			VarParam: &function.Parameter{Name: "parts", Type: cty.String},
			Type:     function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				parts := make([]string, len(args))
				for i, a := range args {
					parts[i] = a.AsString()
				}
				return cty.StringVal(filepath.Join(parts...)), nil
			},
		}),
		"try": tryfunc.TryFunc,
		"can": tryfunc.CanFunc,
	}
	for name, f := range map[string]function.Function{
		"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
		"max": stdlib.MaxFunc, "min": stdlib.MinFunc, "parseint": stdlib.ParseIntFunc,
		"chomp": stdlib.ChompFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
		"indent": stdlib.IndentFunc, "join": stdlib.JoinFunc, "lower": stdlib.LowerFunc,
		"upper": stdlib.UpperFunc, "replace": stdlib.ReplaceFunc, "regex": stdlib.RegexFunc,
		"regexall": stdlib.RegexAllFunc, "regex_replace": stdlib.RegexReplaceFunc,
		"split": stdlib.SplitFunc, "strlen": stdlib.StrlenFunc, "substr": stdlib.SubstrFunc,
		"title": stdlib.TitleFunc, "trim": stdlib.TrimFunc, "trimprefix": stdlib.TrimPrefixFunc,
		"trimsuffix": stdlib.TrimSuffixFunc, "trimspace": stdlib.TrimSpaceFunc,
		"concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc, "distinct": stdlib.DistinctFunc,
		"element": stdlib.ElementFunc, "flatten": stdlib.FlattenFunc, "keys": stdlib.KeysFunc,
		"length": stdlib.LengthFunc, "lookup": stdlib.LookupFunc, "merge": stdlib.MergeFunc,
		"range": stdlib.RangeFunc, "reverse": stdlib.ReverseListFunc, "slice": stdlib.SliceFunc,
		"sort": stdlib.SortFunc, "values": stdlib.ValuesFunc, "zipmap": stdlib.ZipmapFunc,
		"coalesce": stdlib.CoalesceFunc, "compact": stdlib.CompactFunc,
		"jsonencode": stdlib.JSONEncodeFunc, "jsondecode": stdlib.JSONDecodeFunc,
		"csvdecode": stdlib.CSVDecodeFunc,
		"tostring":  stdlib.MakeToFunc(cty.String), "tonumber": stdlib.MakeToFunc(cty.Number),
		"tobool": stdlib.MakeToFunc(cty.Bool), "tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"toset": stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tomap": stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
	} {
		fns[name] = f
	}
	return fns
}

// Glob returns the sorted paths matching pattern, relative to dir when the
// pattern is relative. Besides the filepath.Match syntax, a path element
// "**" matches zero or more folders. Hidden files match only when the
// pattern element starts with a dot.
func Glob(dir, pattern string) ([]string, error) {
	if pattern == "" {
		return nil, fmt.Errorf("empty glob pattern")
	}
	abs := filepath.IsAbs(pattern)
	pat := filepath.ToSlash(pattern)
	if abs {
		pat = strings.TrimPrefix(pat, "/")
	}
	if _, err := path.Match(strings.ReplaceAll(pat, "**", "*"), ""); err != nil {
		return nil, fmt.Errorf("invalid glob pattern %q: %v", pattern, err)
	}
	root := dir
	if abs {
		root = "/"
	}
	elems := strings.Split(path.Clean(pat), "/")
	// Walk from the longest prefix without wildcards.
	base := 0
	for base < len(elems) && !hasMeta(elems[base]) {
		base++
	}
	prefix := path.Join(elems[:base]...)
	if base == len(elems) {
		if _, err := os.Stat(filepath.Join(root, prefix)); err != nil {
			return nil, nil
		}
		return []string{outPath(abs, prefix)}, nil
	}
	var out []string
	start := filepath.Join(root, filepath.FromSlash(prefix))
	if _, err := os.Stat(start); err != nil {
		return nil, nil
	}
	rest := elems[base:]
	err := filepath.WalkDir(start, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(start, p)
		if rel == "." {
			return nil
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if matchElems(rest, parts) {
			out = append(out, outPath(abs, path.Join(prefix, filepath.ToSlash(rel))))
		}
		if de.IsDir() && !canMatchBelow(rest, parts) {
			return filepath.SkipDir
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

func outPath(abs bool, p string) string {
	if abs {
		return "/" + p
	}
	return filepath.FromSlash(p)
}

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[\\") }

func matchElem(pat, name string) bool {
	if strings.HasPrefix(name, ".") && !strings.HasPrefix(pat, ".") {
		return false
	}
	ok, _ := path.Match(pat, name)
	return ok
}

// matchElems matches path elements against pattern elements, "**"
// matching any number of elements.
func matchElems(pat, parts []string) bool {
	if len(pat) == 0 {
		return len(parts) == 0
	}
	if pat[0] == "**" {
		if matchElems(pat[1:], parts) {
			return true
		}
		for i := range parts {
			if strings.HasPrefix(parts[i], ".") {
				return false
			}
			if matchElems(pat[1:], parts[i+1:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 || !matchElem(pat[0], parts[0]) {
		return false
	}
	return matchElems(pat[1:], parts[1:])
}

// canMatchBelow reports whether some path below the folder parts could
// still match pat.
func canMatchBelow(pat, parts []string) bool {
	for i, p := range parts {
		if i >= len(pat) {
			return false
		}
		if pat[i] == "**" {
			return true
		}
		if !matchElem(pat[i], p) {
			return false
		}
	}
	return len(pat) > len(parts)
}
