package stages

import (
	"bytes"
	"io"
	"sort"
)

type bytesBuffer = bytes.Buffer

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func sortItems(items []Item) {
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
}
