package recordset

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pipeml/pipe/artifacts"
)

// File is one JSONL file to read.
type File struct {
	// Path is the file's path on disk.
	Path string
	// Input is the input path that named it (the file itself or a folder
	// above it).
	Input string
	// Name is Path relative to the input folder, or the file's base name
	// when the input is the file itself. Reports use it.
	Name string
}

// List expands inputs (files or folders) into the JSONL files to read. A
// folder is walked for regular files ending in .jsonl. Files are sorted by
// path and listed once, so the result does not depend on the order inputs
// are given in.
func List(inputs []string) ([]File, error) {
	seen := map[string]bool{}
	var files []File
	for _, in := range inputs {
		st, err := os.Stat(in)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			if !seen[in] {
				seen[in] = true
				files = append(files, File{Path: in, Input: in, Name: filepath.Base(in)})
			}
			continue
		}
		err = filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(d.Name(), ".jsonl") || !d.Type().IsRegular() {
				return nil
			}
			if seen[p] {
				return nil
			}
			seen[p] = true
			rel, err := filepath.Rel(in, p)
			if err != nil {
				rel = d.Name()
			}
			files = append(files, File{Path: p, Input: in, Name: filepath.ToSlash(rel)})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// BadLine is a line that could not be read as a record.
type BadLine struct {
	File  string `json:"file"`
	Line  int    `json:"line"`
	Error string `json:"error"`
}

func (b BadLine) String() string { return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Error) }

// Record is one record read from a file, with where it came from.
type Record struct {
	*artifacts.Record
	// File indexes the []File given to Read; Line is 1-based.
	File, Line int
}

// Result is everything read from a list of files.
type Result struct {
	// Records in canonical order: files in List order, lines in order.
	Records []Record
	// Bad lists the lines that were skipped, in the same order.
	Bad []BadLine
}

// Read reads every record of files. Empty lines are skipped silently;
// lines that are not a JSON object of the record form are skipped and
// listed in Result.Bad with file and line (a last line without its
// newline is reported as truncated). Only I/O errors are returned.
func Read(ctx context.Context, files []File) (*Result, error) {
	res := &Result{}
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := readFile(f, i, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func readFile(f File, index int, res *Result) error {
	fh, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	br := bufio.NewReaderSize(fh, 1<<16)
	line := 0
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			line++
			complete := b[len(b)-1] == '\n'
			b = bytes.TrimSpace(b)
			if len(b) > 0 {
				rec, perr := parse(b)
				switch {
				case perr == nil:
					res.Records = append(res.Records, Record{Record: rec, File: index, Line: line})
				case !complete:
					res.Bad = append(res.Bad, BadLine{File: f.Name, Line: line, Error: "truncated last line: " + perr.Error()})
				default:
					res.Bad = append(res.Bad, BadLine{File: f.Name, Line: line, Error: perr.Error()})
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %v", f.Path, line+1, err)
		}
	}
}

// parse decodes one line. A line must be a JSON object; json.Unmarshal
// alone would accept "null" as an empty record.
func parse(b []byte) (*artifacts.Record, error) {
	if b[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	var rec artifacts.Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}
