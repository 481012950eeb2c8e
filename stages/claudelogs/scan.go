package claudelogs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// errSyntax marks a line that is not well-formed JSON; errType one whose
// fields have the wrong JSON types.
var (
	errSyntax = errors.New("invalid JSON")
	errType   = errors.New("invalid record")
)

// decodeLine fills l from one transcript line. It walks the top-level
// object once and decodes only the fields the converter uses; the values
// it skips (progress data, toolUseResult, usage: most of a log's bytes)
// are checked for terminated strings and balanced brackets but not decoded,
// which makes it several times faster than encoding/json on whole lines.
// message is decoded, and fully validated, by encoding/json.
func decodeLine(b []byte, l *rawLine) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		if i < len(b) && (b[i] == '[' || b[i] == '"' || b[i] == '-' || (b[i] >= '0' && b[i] <= '9') || b[i] == 't' || b[i] == 'f' || b[i] == 'n') {
			if _, err := skipValue(b, i); err == nil {
				return fmt.Errorf("%w: a line is not a JSON object", errType)
			}
		}
		return fmt.Errorf("%w: a line must start with '{'", errSyntax)
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return fmt.Errorf("%w: expected a key at byte %d", errSyntax, i)
		}
		ke, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i+1 : ke-1]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return fmt.Errorf("%w: expected ':' at byte %d", errSyntax, i)
		}
		i = skipWS(b, i+1)
		ve, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := l.set(string(key), b[i:ve]); err != nil {
			return err
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return fmt.Errorf("%w: unterminated object", errSyntax)
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return trailing(b, i+1)
		default:
			return fmt.Errorf("%w: expected ',' or '}' at byte %d", errSyntax, i)
		}
	}
}

func trailing(b []byte, i int) error {
	if skipWS(b, i) != len(b) {
		return fmt.Errorf("%w: data after the object", errSyntax)
	}
	return nil
}

// set stores one top-level field.
func (l *rawLine) set(key string, v []byte) error {
	var dst *string
	switch key {
	case "type":
		dst = &l.Type
	case "subtype":
		dst = &l.Subtype
	case "uuid":
		dst = &l.UUID
	case "logicalParentUuid":
		dst = &l.LogicalParentUUID
	case "sessionId":
		dst = &l.SessionID
	case "timestamp":
		dst = &l.Timestamp
	case "version":
		dst = &l.Version
	case "cwd":
		dst = &l.Cwd
	case "agentId":
		dst = &l.AgentID
	case "requestId":
		dst = &l.RequestID
	case "parentUuid":
		if string(v) == "null" {
			l.ParentUUID = nil
			return nil
		}
		s, err := jsonString(key, v)
		if err != nil {
			return err
		}
		l.ParentUUID = &s
		return nil
	case "isSidechain":
		return jsonBool(key, v, &l.IsSidechain)
	case "isMeta":
		return jsonBool(key, v, &l.IsMeta)
	case "isCompactSummary":
		return jsonBool(key, v, &l.IsCompactSummary)
	case "isVisibleInTranscriptOnly":
		return jsonBool(key, v, &l.IsVisibleInTranscriptOnly)
	case "isApiErrorMessage":
		return jsonBool(key, v, &l.IsAPIErrorMessage)
	case "message":
		if string(v) == "null" {
			l.Message = nil
			return nil
		}
		if v[0] != '{' {
			return fmt.Errorf("%w: field message is not an object", errType)
		}
		l.Message = &rawMessage{}
		if err := json.Unmarshal(v, l.Message); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return fmt.Errorf("%w: %v", errType, err)
			}
			return fmt.Errorf("%w: %v", errSyntax, err)
		}
		return nil
	case "toolUseResult":
		// Only the string form matters ("User rejected tool use").
		if v[0] == '"' && bytes.HasPrefix(v, []byte(`"User rejected`)) {
			l.Rejected = true
		}
		return nil
	default:
		return nil
	}
	if string(v) == "null" {
		*dst = ""
		return nil
	}
	s, err := jsonString(key, v)
	if err != nil {
		return err
	}
	*dst = s
	return nil
}

func jsonString(key string, v []byte) (string, error) {
	if v[0] != '"' {
		return "", fmt.Errorf("%w: field %s is not a string", errType, key)
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%w: %v", errSyntax, err)
	}
	return s, nil
}

func jsonBool(key string, v []byte, dst *bool) error {
	switch string(v) {
	case "true":
		*dst = true
	case "false", "null":
		*dst = false
	default:
		return fmt.Errorf("%w: field %s is not a boolean", errType, key)
	}
	return nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, fmt.Errorf("%w: unterminated string", errSyntax)
		}
		q := j + k
		bs := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return q + 1, nil
		}
		j = q + 1
	}
}

// skipValue returns the index after the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, fmt.Errorf("%w: missing value", errSyntax)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				e, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = e
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, fmt.Errorf("%w: unterminated object or array", errSyntax)
	default:
		j := i
		for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
			j++
		}
		lit := string(b[i:j])
		switch {
		case lit == "true", lit == "false", lit == "null":
		case lit != "" && (lit[0] == '-' || (lit[0] >= '0' && lit[0] <= '9')) && json.Valid(b[i:j]):
		default:
			return 0, fmt.Errorf("%w: invalid literal", errSyntax)
		}
		return j, nil
	}
}
