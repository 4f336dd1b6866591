package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// The TOML document is turned into a small tree of nodes that remember where
// they were written, and the schema is then walked over that tree by hand
// (decode.go). That is what lets one pass report every unknown key, wrong
// type and bad value at once, each with its line: a struct decoder stops at
// the first problem and forgets positions.
//
// Syntax and TOML-level semantics (duplicate keys, tables defined twice,
// appending to a static array, ...) are left to go-toml's own decoder, which
// runs first; the tree builder may then assume a well-formed document.

type kind uint8

const (
	kindString kind = iota + 1
	kindInt
	kindFloat
	kindBool
	kindDatetime
	kindArray
	kindTable
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindInt:
		return "integer"
	case kindFloat:
		return "float"
	case kindBool:
		return "boolean"
	case kindDatetime:
		return "date-time"
	case kindArray:
		return "array"
	case kindTable:
		return "table"
	}
	return "invalid"
}

// pos is a 1-based line and column (in characters).
type pos struct{ line, col int }

type node struct {
	kind  kind
	pos   pos
	data  string  // scalars: the decoded string, or the raw literal
	items []*node // kindArray; an array of tables is an array of kindTable
	table *table  // kindTable
}

type field struct {
	name string
	pos  pos // of the key
	val  *node
}

// table keeps its fields in document order, so that errors come out in the
// order the user wrote the keys.
type table struct {
	fields []*field
	byName map[string]*field
}

func newTableNode(p pos) *node {
	return &node{kind: kindTable, pos: p, table: &table{byName: map[string]*field{}}}
}

func (t *table) add(name string, p pos, v *node) {
	f := &field{name: name, pos: p, val: v}
	t.fields = append(t.fields, f)
	t.byName[name] = f
}

// lineIndex maps byte offsets to positions.
type lineIndex struct {
	data   []byte
	starts []int // offset of the first byte of each line
}

func newLineIndex(data []byte) *lineIndex {
	li := &lineIndex{data: data, starts: []int{0}}
	for i, c := range data {
		if c == '\n' {
			li.starts = append(li.starts, i+1)
		}
	}
	return li
}

func (li *lineIndex) pos(off int) pos {
	if off < 0 || off > len(li.data) {
		return pos{}
	}
	line := sort.Search(len(li.starts), func(i int) bool { return li.starts[i] > off }) - 1
	start := li.starts[line]
	return pos{line: line + 1, col: utf8.RuneCount(li.data[start:off]) + 1}
}

type keyPart struct {
	name string
	pos  pos
}

type treeBuilder struct {
	file string
	li   *lineIndex
	p    *unstable.Parser
}

// parseTree checks data for TOML syntax and builds the positioned tree. A
// problem is returned as a single *Error, as a TOML syntax error makes
// whatever follows it meaningless.
func parseTree(file string, data []byte) (root *node, err *Error) {
	var generic map[string]any
	if uerr := toml.Unmarshal(data, &generic); uerr != nil {
		e := &Error{File: file, Msg: strings.TrimPrefix(uerr.Error(), "toml: "), err: uerr}
		var de *toml.DecodeError
		if errors.As(uerr, &de) {
			e.Line, e.Col = de.Position()
		}
		return nil, e
	}
	b := &treeBuilder{file: file, li: newLineIndex(data), p: &unstable.Parser{}}
	b.p.Reset(data)
	defer func() {
		// go-toml accepted the document, so the builder should never trip
		// over it; if it does, that is a bug here, reported rather than
		// crashing the daemon on reload.
		if r := recover(); r != nil {
			root, err = nil, &Error{File: file, Msg: fmt.Sprintf("internal error reading TOML: %v", r)}
		}
	}()
	root = newTableNode(pos{line: 1, col: 1})
	cur := root
	for b.p.NextExpression() {
		expr := b.p.Expression()
		switch expr.Kind {
		case unstable.Table:
			keys := b.keys(expr)
			t, e := b.descend(root, keys)
			if e != nil {
				return nil, e
			}
			t.pos = keys[len(keys)-1].pos
			cur = t
		case unstable.ArrayTable:
			keys := b.keys(expr)
			last := keys[len(keys)-1]
			parent, e := b.descend(root, keys[:len(keys)-1])
			if e != nil {
				return nil, e
			}
			arr := parent.table.byName[last.name]
			if arr == nil {
				parent.table.add(last.name, last.pos, &node{kind: kindArray, pos: last.pos})
				arr = parent.table.byName[last.name]
			}
			if arr.val.kind != kindArray {
				return nil, b.conflict(last)
			}
			t := newTableNode(last.pos)
			arr.val.items = append(arr.val.items, t)
			cur = t
		case unstable.KeyValue:
			if e := b.keyValue(cur, expr); e != nil {
				return nil, e
			}
		}
	}
	if perr := b.p.Error(); perr != nil {
		e := &Error{File: file, Msg: perr.Error(), err: perr}
		var pe *unstable.ParserError
		if errors.As(perr, &pe) {
			off := cap(data) - cap(pe.Highlight)
			if pe.Highlight != nil && off >= 0 && off <= len(data) {
				p := b.li.pos(off)
				e.Line, e.Col = p.line, p.col
			}
		}
		return nil, e
	}
	return root, nil
}

func (b *treeBuilder) at(n *unstable.Node) pos {
	return b.li.pos(int(n.Raw.Offset))
}

func (b *treeBuilder) keys(n *unstable.Node) []keyPart {
	var out []keyPart
	it := n.Key()
	for it.Next() {
		k := it.Node()
		out = append(out, keyPart{name: string(k.Data), pos: b.at(k)})
	}
	return out
}

func (b *treeBuilder) conflict(k keyPart) *Error {
	return &Error{File: b.file, Line: k.pos.line, Col: k.pos.col, Key: k.name, Msg: "key defined twice with different types"}
}

// descend walks (creating as needed) the tables named by keys, starting at
// from. An array of tables stands for its last element, as in TOML.
func (b *treeBuilder) descend(from *node, keys []keyPart) (*node, *Error) {
	cur := from
	for _, k := range keys {
		f := cur.table.byName[k.name]
		if f == nil {
			t := newTableNode(k.pos)
			cur.table.add(k.name, k.pos, t)
			cur = t
			continue
		}
		switch {
		case f.val.kind == kindTable:
			cur = f.val
		case f.val.kind == kindArray && len(f.val.items) > 0 && f.val.items[len(f.val.items)-1].kind == kindTable:
			cur = f.val.items[len(f.val.items)-1]
		default:
			return nil, b.conflict(k)
		}
	}
	return cur, nil
}

func (b *treeBuilder) keyValue(into *node, kv *unstable.Node) *Error {
	keys := b.keys(kv)
	last := keys[len(keys)-1]
	t, e := b.descend(into, keys[:len(keys)-1])
	if e != nil {
		return e
	}
	if t.table.byName[last.name] != nil {
		return b.conflict(last)
	}
	v, e := b.value(kv.Value(), last.pos)
	if e != nil {
		return e
	}
	t.table.add(last.name, last.pos, v)
	return nil
}

// value converts one value. Arrays carry no position of their own in the
// unstable AST, so they get fallback (their key, or their parent array).
func (b *treeBuilder) value(n *unstable.Node, fallback pos) (*node, *Error) {
	switch n.Kind {
	case unstable.String:
		return &node{kind: kindString, pos: b.at(n), data: string(n.Data)}, nil
	case unstable.Integer:
		return &node{kind: kindInt, pos: b.at(n), data: string(n.Data)}, nil
	case unstable.Float:
		return &node{kind: kindFloat, pos: b.at(n), data: string(n.Data)}, nil
	case unstable.Bool:
		return &node{kind: kindBool, pos: b.at(n), data: string(n.Data)}, nil
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return &node{kind: kindDatetime, pos: b.at(n), data: string(n.Data)}, nil
	case unstable.Array:
		arr := &node{kind: kindArray, pos: fallback}
		it := n.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			v, e := b.value(c, fallback)
			if e != nil {
				return nil, e
			}
			arr.items = append(arr.items, v)
		}
		return arr, nil
	case unstable.InlineTable:
		t := newTableNode(b.at(n))
		it := n.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind != unstable.KeyValue {
				continue
			}
			if e := b.keyValue(t, c); e != nil {
				return nil, e
			}
		}
		return t, nil
	}
	return nil, &Error{File: b.file, Line: fallback.line, Col: fallback.col, Msg: fmt.Sprintf("unexpected TOML node %s", n.Kind)}
}
