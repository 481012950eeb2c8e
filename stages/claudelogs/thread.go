package claudelogs

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"github.com/pipeml/pipe/artifacts"
	"github.com/pipeml/pipe/stages/secrets"
)

// evKind is the kind of one conversation event.
type evKind int

const (
	evHuman     evKind = iota // a human message: starts a turn
	evSummary                 // a compaction summary: starts a segment
	evAssistant               // one merged API reply
	evTool                    // one tool result
	evUser                    // other user input inside a loop (notifications, interjections)
	evCut                     // an interruption or rejection: ends the turn
)

// event is one step of a rebuilt conversation, already cleaned and
// redacted.
type event struct {
	kind evKind
	msg  artifacts.Message
	ts   string
	// cut is the reason of an evCut; dropLast says the cut also removes
	// the assistant message that made the rejected call.
	cut      string
	dropLast bool
}

// conversation is one rebuilt conversation of a session.
type conversation struct {
	agent   string // "" for the main conversation
	version string
	cwd     string
	events  []event
}

// fileIndex indexes one file's nodes.
type fileIndex struct {
	pf      *parsedFile
	rep     *Report
	byUUID  map[string]*node
	groups  map[string][]*node // assistant lines by reply
	results map[string]resultRef
	used    map[*node]bool
}

type resultRef struct {
	n     *node
	block int
}

func indexFile(pf *parsedFile, rep *Report) *fileIndex {
	ix := &fileIndex{
		pf:      pf,
		rep:     rep,
		byUUID:  make(map[string]*node, len(pf.nodes)),
		groups:  map[string][]*node{},
		results: map[string]resultRef{},
		used:    map[*node]bool{},
	}
	kept := pf.nodes[:0]
	for _, n := range pf.nodes {
		if _, dup := ix.byUUID[n.UUID]; dup {
			rep.drop("duplicate_uuid", 1)
			continue
		}
		ix.byUUID[n.UUID] = n
		kept = append(kept, n)
	}
	pf.nodes = kept
	for i, n := range pf.nodes {
		n.pos = i
	}
	for _, n := range pf.nodes {
		switch n.Type {
		case "assistant":
			k := n.groupKey()
			ix.groups[k] = append(ix.groups[k], n)
		case "user":
			for i, b := range n.blocks {
				if b.Type == "tool_result" && b.ToolUseID != "" {
					if _, dup := ix.results[b.ToolUseID]; !dup {
						ix.results[b.ToolUseID] = resultRef{n, i}
					}
				}
			}
		}
	}
	return ix
}

func isChat(n *node) bool { return n.Type == "user" || n.Type == "assistant" }

// up returns the node before n in its chain: its parent, or for a
// compaction boundary the last line before the compaction.
//
// A boundary whose logicalParentUuid is missing from the file (Claude
// Code does not always write that line) continues from the last line
// before it in file order on the same side (main or sidechain), so the
// history before a compaction is never cut off.
func (ix *fileIndex) up(n *node) *node {
	if p := n.parent(); p != "" {
		return ix.byUUID[p]
	}
	if n.Type != "system" || n.Subtype != "compact_boundary" {
		return nil
	}
	if p := ix.byUUID[n.LogicalParentUUID]; p != nil {
		return p
	}
	for i := n.pos - 1; i >= 0; i-- {
		if m := ix.pf.nodes[i]; m.IsSidechain == n.IsSidechain {
			return m
		}
	}
	return nil
}

// mainPath returns the main branch of the nodes accepted by in: the path
// from their last chat line in file order (the tip of the branch the user
// was on when the log was last written) back to its root. Other branches
// (rewinds) are left out.
func (ix *fileIndex) mainPath(in func(*node) bool) []*node {
	for i := len(ix.pf.nodes) - 1; i >= 0; i-- {
		if n := ix.pf.nodes[i]; isChat(n) && in(n) {
			return ix.pathTo(n)
		}
	}
	return nil
}

// pathTo returns the chain from the root down to leaf.
func (ix *fileIndex) pathTo(leaf *node) []*node {
	var path []*node
	seen := map[*node]bool{}
	for cur := leaf; cur != nil && !seen[cur]; cur = ix.up(cur) {
		seen[cur] = true
		path = append(path, cur)
		if cur.parent() != "" && ix.byUUID[cur.parent()] == nil {
			// The parent line is not in the file (a log copied in part,
			// or a line that failed to parse): the path starts here.
			ix.rep.drop("broken_chain", 1)
		}
	}
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path
}

// paths returns the conversations of a set of nodes (those accepted by
// in) as root-to-leaf paths, one per root, in the order of their first
// chat line: 1.0.x inline sub-agents, each starting at parentUuid null.
// The leaf of a root is its last chat line in file order.
func (ix *fileIndex) paths(in func(*node) bool) [][]*node {
	rootOf := map[*node]*node{}
	var findRoot func(n *node) *node
	findRoot = func(n *node) *node {
		var chain []*node
		seen := map[*node]bool{}
		cur := n
		var root *node
		for {
			if r, ok := rootOf[cur]; ok {
				root = r
				break
			}
			if seen[cur] {
				root = cur // a cycle: treat the repeated node as the root
				break
			}
			seen[cur] = true
			chain = append(chain, cur)
			p := ix.up(cur)
			if p == nil {
				root = cur
				break
			}
			cur = p
		}
		for _, c := range chain {
			rootOf[c] = root
		}
		return root
	}
	type group struct {
		first, leaf *node
	}
	groups := map[*node]*group{}
	var order []*node
	for _, n := range ix.pf.nodes {
		if !isChat(n) || !in(n) {
			continue
		}
		r := findRoot(n)
		g := groups[r]
		if g == nil {
			g = &group{first: n}
			groups[r] = g
			order = append(order, r)
		}
		g.leaf = n
	}
	out := make([][]*node, 0, len(order))
	for _, r := range order {
		out = append(out, ix.pathTo(groups[r].leaf))
	}
	return out
}

// builder turns paths into events.
type builder struct {
	cfg     *Config
	det     *secrets.Detector
	rep     *Report
	counts  secrets.Counts
	ix      *fileIndex
	emitted map[string]bool // reply groups already emitted
	results map[string]bool // tool results already emitted
}

// clean strips system reminders and ANSI codes, redacts, and trims
// surrounding white space.
func (b *builder) clean(s string) string {
	return strings.TrimSpace(b.cleanKeepIndent(s))
}

// cleanKeepIndent is clean for tool output: leading spaces stay (Read
// output starts with right-aligned line numbers), only leading blank
// lines and trailing white space go.
func (b *builder) cleanKeepIndent(s string) string {
	s, n := stripTag(s, "system-reminder")
	b.rep.drop("block:system_reminder", n)
	s = b.det.Redact(stripANSI(s), b.counts)
	s = strings.TrimRight(s, " \t\r\n")
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 || strings.TrimSpace(s[:i]) != "" {
			return s
		}
		s = s[i+1:]
	}
}

// events rebuilds the events of one path.
func (b *builder) events(path []*node) []event {
	var evs []event
	for _, n := range path {
		b.ix.used[n] = true
		switch n.Type {
		case "system":
			if n.Subtype == "compact_boundary" {
				// The summary line that follows starts the new segment.
				continue
			}
		case "assistant":
			evs = b.assistant(n, evs)
		case "user":
			evs = b.user(n, evs)
		}
	}
	return evs
}

func (b *builder) assistant(n *node, evs []event) []event {
	switch {
	case n.IsAPIErrorMessage:
		b.rep.drop("api_error", 1)
		return append(evs, event{kind: evCut, cut: "api_error", ts: n.Timestamp})
	case n.Message.Model == "<synthetic>":
		b.rep.drop("synthetic", 1)
		return evs
	}
	key := n.groupKey()
	if b.emitted[key] {
		return evs
	}
	b.emitted[key] = true
	var texts []string
	var calls []artifacts.ToolCall
	var callNames []string
	seenBlocks := map[string]bool{}
	for _, m := range b.ix.groups[key] {
		b.ix.used[m] = true
		for _, blk := range m.blocks {
			switch blk.Type {
			case "text":
				t := strings.TrimSpace(stripANSI(blk.Text))
				if t == "" || seenBlocks["t:"+t] {
					continue
				}
				seenBlocks["t:"+t] = true
				texts = append(texts, b.det.Redact(t, b.counts))
			case "tool_use":
				if seenBlocks["u:"+blk.ID] {
					b.rep.drop("block:duplicate_tool_use", 1)
					continue
				}
				seenBlocks["u:"+blk.ID] = true
				input := bytes.TrimSpace(blk.Input)
				if len(input) == 0 || input[0] != '{' {
					input = []byte("{}")
				}
				args, err := redactJSON(input, b.det, b.counts)
				if err != nil {
					args = json.RawMessage("{}")
				}
				calls = append(calls, artifacts.ToolCall{
					ID:       blk.ID,
					Type:     "function",
					Function: artifacts.FunctionCall{Name: blk.Name, Arguments: args},
				})
				callNames = append(callNames, blk.Name)
			case "thinking", "redacted_thinking":
				b.rep.drop("block:thinking", 1)
			default:
				b.rep.drop("block:"+blk.Type, 1)
			}
		}
	}
	if len(texts) == 0 && len(calls) == 0 {
		b.rep.drop("empty_reply", 1)
		return evs
	}
	evs = append(evs, event{
		kind: evAssistant,
		ts:   n.Timestamp,
		msg:  artifacts.Message{Role: "assistant", Content: strings.Join(texts, "\n\n"), ToolCalls: calls},
	})
	// The results of the reply's calls follow it in call order, wherever
	// their lines sit in the file.
	for _, c := range calls {
		if ref, ok := b.ix.results[c.ID]; ok {
			b.results[c.ID] = true
			b.ix.used[ref.n] = true
		}
	}
	for i, c := range calls {
		ref, ok := b.ix.results[c.ID]
		if !ok {
			b.rep.drop("missing_tool_result", 1)
			continue
		}
		blk := ref.n.blocks[ref.block]
		text, images := toolResultText(blk.Content)
		b.rep.OmittedImages += images
		if ref.n.Rejected || (blk.IsError && isRejection(text)) {
			return append(evs, event{kind: evCut, cut: "rejected_tool_call", dropLast: true, ts: ref.n.Timestamp})
		}
		text = b.cleanKeepIndent(text)
		text, cut := truncate(text, b.cfg.MaxToolOutput)
		if cut {
			b.rep.TruncatedToolOutputs++
		}
		evs = append(evs, event{
			kind: evTool,
			ts:   ref.n.Timestamp,
			msg:  artifacts.Message{Role: "tool", Content: text, Name: callNames[i], ToolCallID: c.ID},
		})
	}
	return evs
}

func (b *builder) user(n *node, evs []event) []event {
	if n.IsMeta {
		b.rep.drop("meta", 1)
		return evs
	}
	var texts []string
	images := 0
	hadResults := false
	for _, blk := range n.blocks {
		switch blk.Type {
		case "tool_result":
			hadResults = true
			if !b.results[blk.ToolUseID] {
				b.rep.drop("orphan_tool_result", 1)
			}
		case "text":
			texts = append(texts, blk.Text)
		case "image":
			texts = append(texts, imageMarker)
			images++
		case "document":
			texts = append(texts, documentMarker)
			images++
		default:
			b.rep.drop("block:"+blk.Type, 1)
		}
	}
	if len(texts) == 0 {
		return evs
	}
	raw := strings.Join(texts, "\n\n")
	if n.IsCompactSummary || isCompactionText(raw) {
		return append(evs, event{kind: evSummary, ts: n.Timestamp, msg: artifacts.Message{Role: "user", Content: b.clean(raw)}})
	}
	if n.IsVisibleInTranscriptOnly {
		b.rep.drop("transcript_only", 1)
		return evs
	}
	text := b.clean(raw)
	kind := classifyUser(text)
	switch kind {
	case userInterrupted:
		b.rep.drop("interruption_marker", 1)
		return append(evs, event{kind: evCut, cut: "interrupted", ts: n.Timestamp})
	case userHuman, userNotification:
		b.rep.OmittedImages += images
		k := evHuman
		if kind == userNotification || hadResults {
			k = evUser
		}
		return append(evs, event{kind: k, ts: n.Timestamp, msg: artifacts.Message{Role: "user", Content: text}})
	default:
		b.rep.drop(userKindReason[kind], 1)
		return evs
	}
}

// sessionConversations rebuilds every conversation of one item's files.
// Files after the first that are agent files hold one sub-agent each.
func sessionConversations(files []*parsedFile, agentFile []bool, cfg *Config, det *secrets.Detector, rep *Report, counts secrets.Counts) []conversation {
	var convs []conversation
	for fi, pf := range files {
		ix := indexFile(pf, rep)
		b := &builder{cfg: cfg, det: det, rep: rep, counts: counts, ix: ix, emitted: map[string]bool{}, results: map[string]bool{}}
		add := func(path []*node, agent string) {
			if len(path) == 0 {
				return
			}
			c := conversation{agent: agent}
			for _, n := range path {
				if c.version == "" && n.Version != "" {
					c.version = n.Version
				}
				if c.cwd == "" && n.Cwd != "" {
					c.cwd = n.Cwd
				}
			}
			c.events = b.events(path)
			convs = append(convs, c)
		}
		if agentFile[fi] {
			agent := ""
			for _, n := range pf.nodes {
				if n.AgentID != "" {
					agent = n.AgentID
					break
				}
			}
			if agent == "" {
				agent = strings.TrimSuffix(strings.TrimPrefix(baseName(pf.name), "agent-"), ".jsonl")
			}
			add(ix.mainPath(func(*node) bool { return true }), agent)
		} else {
			add(ix.mainPath(func(n *node) bool { return !n.IsSidechain }), "")
			for _, p := range ix.paths(func(n *node) bool { return n.IsSidechain }) {
				add(p, inlineAgentID(p))
			}
		}
		offBranch := 0
		for _, n := range pf.nodes {
			if isChat(n) && !ix.used[n] {
				offBranch++
			}
		}
		rep.drop("off_branch", offBranch)
	}
	return convs
}

// inlineAgentID names a 1.0.x inline sub-agent by its agentId when the
// lines carry one, else by the first 8 characters of its root's uuid.
func inlineAgentID(path []*node) string {
	for _, n := range path {
		if n.AgentID != "" {
			return n.AgentID
		}
	}
	id := path[0].UUID
	if len(id) > 8 {
		id = id[:8]
	}
	return "sidechain-" + id
}

func baseName(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
