package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// pyJSON writes the JSON document raw to b as Python's
// json.dumps(json.loads(raw), ensure_ascii=False) writes it, which is what
// the `tojson` filter of Hugging Face's chat templates produces:
//
//   - separators ", " and ": ", no indentation;
//   - object keys in document order; a repeated key keeps the position of
//     its first occurrence and the value of its last (a Python dict);
//   - strings escape only '"', '\\' and the control characters below
//     U+0020 (\n, \r, \t, \b, \f by name, the rest as \u00xx); all other
//     characters, non-ASCII ones and U+2028 included, are written as is;
//   - integers are written in full; numbers with a fraction or an exponent
//     become Python floats, written by float.__repr__ (1.0, 1e-05, 1e+16).
//
// An empty raw is Python's None, written "null".
func pyJSON(b *strings.Builder, raw json.RawMessage) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		b.WriteString("null")
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := pyParse(dec)
	if err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON: data after the value")
	}
	return pyWrite(b, v)
}

// pyObject is a JSON object with Python dict semantics.
type pyObject struct {
	keys []string
	vals map[string]any
}

func pyParse(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			obj := &pyObject{vals: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("invalid JSON: %v", err)
				}
				k := kt.(string)
				v, err := pyParse(dec)
				if err != nil {
					return nil, err
				}
				if _, dup := obj.vals[k]; !dup {
					obj.keys = append(obj.keys, k)
				}
				obj.vals[k] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("invalid JSON: %v", err)
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := pyParse(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("invalid JSON: %v", err)
			}
			return arr, nil
		}
		return nil, fmt.Errorf("invalid JSON: unexpected %v", tok)
	default:
		return tok, nil // string, json.Number, bool or nil
	}
}

func pyWrite(b *strings.Builder, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		pyString(b, v)
	case json.Number:
		return pyNumber(b, string(v))
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := pyWrite(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case *pyObject:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			pyString(b, k)
			b.WriteString(": ")
			if err := pyWrite(b, v.vals[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON value %T", v)
	}
	return nil
}

// pyString writes s as Python's json encode_basestring does.
func pyString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// pyNumber writes a JSON number literal as Python's json round trip does:
// integers stay integers (Python's are unbounded), the rest are floats.
func pyNumber(b *strings.Builder, lit string) error {
	if !strings.ContainsAny(lit, ".eE") {
		neg := strings.HasPrefix(lit, "-")
		digits := strings.TrimLeft(strings.TrimPrefix(lit, "-"), "0")
		if digits == "" {
			b.WriteByte('0') // -0 is the integer 0
			return nil
		}
		if neg {
			b.WriteByte('-')
		}
		b.WriteString(digits)
		return nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("invalid JSON number %q", lit)
	}
	b.WriteString(pyFloatRepr(f))
	return nil
}

// pyFloatRepr returns Python's repr of f (and json.dumps's for inf): the
// shortest digits that round-trip, in positional notation when the decimal
// exponent is in [-4, 16), else in scientific notation with a signed,
// at least two-digit exponent.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case math.IsNaN(f):
		return "NaN"
	}
	// Shortest round-trip digits d1.d2d3...e±X.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	// Positional: the point goes after exp+1 digits.
	pt := exp + 1
	switch {
	case pt <= 0:
		return sign + "0." + strings.Repeat("0", -pt) + digits
	case pt >= len(digits):
		return sign + digits + strings.Repeat("0", pt-len(digits)) + ".0"
	default:
		return sign + digits[:pt] + "." + digits[pt:]
	}
}
