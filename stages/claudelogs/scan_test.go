package claudelogs

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// refLine is rawLine as encoding/json decodes it, the reference for
// decodeLine.
type refLine struct {
	Type                      string          `json:"type"`
	Subtype                   string          `json:"subtype"`
	UUID                      string          `json:"uuid"`
	ParentUUID                *string         `json:"parentUuid"`
	LogicalParentUUID         string          `json:"logicalParentUuid"`
	SessionID                 string          `json:"sessionId"`
	Timestamp                 string          `json:"timestamp"`
	Version                   string          `json:"version"`
	Cwd                       string          `json:"cwd"`
	AgentID                   string          `json:"agentId"`
	RequestID                 string          `json:"requestId"`
	IsSidechain               bool            `json:"isSidechain"`
	IsMeta                    bool            `json:"isMeta"`
	IsCompactSummary          bool            `json:"isCompactSummary"`
	IsVisibleInTranscriptOnly bool            `json:"isVisibleInTranscriptOnly"`
	IsAPIErrorMessage         bool            `json:"isApiErrorMessage"`
	Message                   *rawMessage     `json:"message"`
	ToolUseResult             json.RawMessage `json:"toolUseResult"`
}

// TestDecodeLineMatchesEncodingJSON decodes every line of the real and
// synthetic transcripts both ways and compares.
func TestDecodeLineMatchesEncodingJSON(t *testing.T) {
	n := 0
	err := filepath.WalkDir("testdata", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".jsonl" || filepath.Base(filepath.Dir(p)) == "golden" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, ln := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(ln)) == 0 {
				continue
			}
			var ref refLine
			refErr := json.Unmarshal(ln, &ref)
			var got rawLine
			gotErr := decodeLine(ln, &got)
			if (refErr == nil) != (gotErr == nil) {
				t.Errorf("%s:%d: encoding/json error %v, decodeLine error %v", p, i+1, refErr, gotErr)
				continue
			}
			if refErr != nil {
				continue
			}
			n++
			want := rawLine{ref.Type, ref.Subtype, ref.UUID, ref.ParentUUID, ref.LogicalParentUUID, ref.SessionID,
				ref.Timestamp, ref.Version, ref.Cwd, ref.AgentID, ref.RequestID, ref.IsSidechain, ref.IsMeta,
				ref.IsCompactSummary, ref.IsVisibleInTranscriptOnly, ref.IsAPIErrorMessage, ref.Message,
				bytes.HasPrefix(ref.ToolUseResult, []byte(`"User rejected`))}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s:%d: decodeLine differs from encoding/json", p, i+1)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 1700 {
		t.Errorf("compared only %d lines", n)
	}
}

func TestDecodeLineErrors(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{`{"type":"user","uuid":"a"`, errSyntax},
		{`{"type":"user","data":{"x":[1,2}`, errSyntax},
		{`{"type":"user","data":"unterminated}`, errSyntax},
		{`{"type":"user",}`, errSyntax},
		{`{"type" "user"}`, errSyntax},
		{`{"type":"user"} x`, errSyntax},
		{`{"type":"user","n":01x}`, errSyntax},
		{`not json`, errSyntax},
		{`{"type":"user","message":{"content":"x}}`, errSyntax},
		{`[1,2,3]`, errType},
		{`"a string"`, errType},
		{`{"type":3}`, errType},
		{`{"isMeta":"yes"}`, errType},
		{`{"message":"text"}`, errType},
		{`{"message":{"id":4}}`, errType},
		{`{"parentUuid":{"a":1}}`, errType},
	}
	for _, tt := range tests {
		var l rawLine
		if err := decodeLine([]byte(tt.in), &l); !errors.Is(err, tt.want) {
			t.Errorf("decodeLine(%s) = %v, want %v", tt.in, err, tt.want)
		}
	}
	var l rawLine
	if err := decodeLine([]byte(` { "type" : "user" , "uuid":"a\"b\\", "data":{"s":"}]\"{"}, "n":-1.5e3, "parentUuid":null } `), &l); err != nil || l.UUID != `a"b\` || l.Type != "user" || l.ParentUUID != nil {
		t.Errorf("decodeLine: %v %+v", err, l)
	}
}

func FuzzDecodeLine(f *testing.F) {
	f.Add([]byte(`{"type":"user","uuid":"a","message":{"content":"x"}}`))
	f.Add([]byte(`{"data":{"a":[1,"]",{"b":null}]},"isMeta":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l rawLine
		err := decodeLine(b, &l)
		// Well-formed JSON is never a syntax error (at most a record of the
		// wrong shape).
		if json.Valid(b) && errors.Is(err, errSyntax) {
			t.Errorf("valid JSON %q rejected: %v", b, err)
		}
	})
}
