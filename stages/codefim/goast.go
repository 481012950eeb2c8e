package codefim

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
)

// Kinds of middle span, recorded in meta.boundary.
const (
	boundaryLine     = "line"      // whole lines
	boundaryStmt     = "stmt"      // one whole Go statement
	boundaryStmts    = "stmts"     // a run of consecutive Go statements of one block
	boundaryBlock    = "block"     // the inside of a Go block (if, for, switch, ... body)
	boundaryFuncBody = "func_body" // the inside of a Go function body
	boundaryFunc     = "func"      // a whole Go function or method declaration
)

// span is a candidate middle: content[start:end] and its kind.
type span struct {
	start, end int
	kind       string
}

// maxStmtRun is the longest run of consecutive statements taken as one
// "stmts" candidate.
const maxStmtRun = 4

// goCandidates returns the syntax-boundary middles of a Go source file:
// whole statements, runs of statements, block and function-body insides,
// and whole function declarations. A span that covers whole lines is
// widened to those lines (indentation and newline included), so the
// middle starts and ends at line boundaries. It returns nil when src does
// not parse. Candidates are in source order.
func goCandidates(src string) []span {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", src, parser.SkipObjectResolution)
	if err != nil {
		return nil
	}
	tf := fset.File(f.Pos())
	off := func(p token.Pos) int { return tf.Offset(p) }
	var out []span
	add := func(start, end int, kind string) {
		if start >= end || strings.TrimSpace(src[start:end]) == "" {
			return
		}
		s, e := alignLines(src, start, end)
		out = append(out, span{s, e, kind})
	}
	addInner := func(b *ast.BlockStmt, kind string) {
		if b == nil || len(b.List) == 0 || !b.Rbrace.IsValid() {
			return
		}
		s, e := innerBlock(src, off(b.Lbrace), off(b.Rbrace))
		if s < e && strings.TrimSpace(src[s:e]) != "" {
			out = append(out, span{s, e, kind})
		}
	}
	addList := func(list []ast.Stmt) {
		for i, st := range list {
			add(off(st.Pos()), off(st.End()), boundaryStmt)
			for n := 2; n <= maxStmtRun && i+n <= len(list); n++ {
				add(off(st.Pos()), off(list[i+n-1].End()), boundaryStmts)
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			if n.Body != nil {
				add(off(n.Pos()), off(n.End()), boundaryFunc)
				addInner(n.Body, boundaryFuncBody)
				addList(n.Body.List)
			}
			// Walk into the body's statements, not the body itself, so
			// it is not also taken as a plain block.
			if n.Body != nil {
				for _, st := range n.Body.List {
					ast.Inspect(st, inspectNested(addInner, addList))
				}
			}
			return false
		case *ast.FuncLit:
			addInner(n.Body, boundaryFuncBody)
			addList(n.Body.List)
			for _, st := range n.Body.List {
				ast.Inspect(st, inspectNested(addInner, addList))
			}
			return false
		}
		return true
	})
	return dedupeSpans(out)
}

// dedupeSpans drops repeated spans (a block holding one statement gives
// the same span twice), keeping the first kind seen.
func dedupeSpans(in []span) []span {
	seen := make(map[[2]int]bool, len(in))
	out := in[:0]
	for _, s := range in {
		k := [2]int{s.start, s.end}
		if !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

// inspectNested returns the ast.Inspect visitor for statements inside a
// function: blocks give "block" insides and their statements, case and
// select clauses give their statements, and function literals their
// bodies.
func inspectNested(addInner func(*ast.BlockStmt, string), addList func([]ast.Stmt)) func(ast.Node) bool {
	var visit func(ast.Node) bool
	visit = func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			addInner(n.Body, boundaryFuncBody)
			addList(n.Body.List)
			for _, st := range n.Body.List {
				ast.Inspect(st, visit)
			}
			return false
		case *ast.BlockStmt:
			if isClauseList(n.List) {
				// A switch or select body: its case clauses are not
				// statements on their own; their bodies are taken below.
				return true
			}
			addInner(n, boundaryBlock)
			addList(n.List)
		case *ast.CaseClause:
			addList(n.Body)
		case *ast.CommClause:
			addList(n.Body)
		}
		return true
	}
	return visit
}

// alignLines widens [start, end) to whole lines when only blanks precede
// start on its line and only blanks follow end on its line; otherwise it
// returns the span unchanged.
func alignLines(src string, start, end int) (int, int) {
	ls := strings.LastIndexByte(src[:start], '\n') + 1
	if strings.TrimSpace(src[ls:start]) != "" {
		return start, end
	}
	le := len(src)
	if k := strings.IndexByte(src[end:], '\n'); k >= 0 {
		le = end + k + 1
	}
	if strings.TrimSpace(src[end:le]) != "" {
		return start, end
	}
	return ls, le
}

// innerBlock returns the inside of the braces at lbrace and rbrace: the
// whole lines between them when "{" ends its line and "}" starts its
// line, otherwise the text between them without surrounding blanks.
func innerBlock(src string, lbrace, rbrace int) (int, int) {
	s, e := lbrace+1, rbrace
	nl := strings.IndexByte(src[s:e], '\n')
	rs := strings.LastIndexByte(src[:e], '\n') + 1
	if nl >= 0 && strings.TrimSpace(src[s:s+nl]) == "" && rs > s+nl && strings.TrimSpace(src[rs:e]) == "" {
		return s + nl + 1, rs
	}
	for s < e && isBlank(src[s]) {
		s++
	}
	for e > s && isBlank(src[e-1]) {
		e--
	}
	return s, e
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isClauseList reports whether list is the case or communication clauses
// of a switch or select statement.
func isClauseList(list []ast.Stmt) bool {
	if len(list) == 0 {
		return false
	}
	switch list[0].(type) {
	case *ast.CaseClause, *ast.CommClause:
		return true
	}
	return false
}
