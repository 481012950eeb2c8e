package lengths

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Plot geometry, in pixels.
const (
	plotW, plotH = 960, 540
	marginL      = 78
	marginR      = 24
	marginT      = 48
	marginB      = 64
	legendRow    = 16
)

var (
	white     = color.RGBA{255, 255, 255, 255}
	black     = color.RGBA{0, 0, 0, 255}
	gridGrey  = color.RGBA{225, 225, 225, 255}
	axisGrey  = color.RGBA{90, 90, 90, 255}
	markerRed = color.RGBA{200, 30, 30, 255}
	// palette holds the source colours (Tableau 10); sources past the
	// last share the grey "other" colour.
	palette = []color.RGBA{
		{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255},
		{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255},
		{188, 189, 34, 255}, {23, 190, 207, 255},
	}
	otherGrey = color.RGBA{150, 150, 150, 255}
)

// series is the lengths of one source, for the plot.
type series struct {
	name    string
	lengths []int
}

// histogram is the binned data behind the plot.
type histogram struct {
	binWidth int
	bins     int
	// counts[s][b] is the number of records of series s in bin b, which
	// holds lengths in [b*binWidth, (b+1)*binWidth).
	counts [][]int
	names  []string
}

// binData spreads the series over about `bins` bins of a round width
// (1, 2 or 5 times a power of ten) that cover every length. Series past
// the palette's size are merged into one called "other".
func binData(ss []series, bins int) *histogram {
	if len(ss) > len(palette) {
		other := series{name: "other"}
		for _, s := range ss[len(palette)-1:] {
			other.lengths = append(other.lengths, s.lengths...)
		}
		ss = append(ss[:len(palette)-1:len(palette)-1], other)
	}
	maxLen := 1
	for _, s := range ss {
		for _, l := range s.lengths {
			maxLen = max(maxLen, l)
		}
	}
	w := niceStep(float64(maxLen+1) / float64(bins))
	h := &histogram{binWidth: w, bins: maxLen/w + 1}
	for _, s := range ss {
		c := make([]int, h.bins)
		for _, l := range s.lengths {
			c[l/w]++
		}
		h.counts = append(h.counts, c)
		h.names = append(h.names, s.name)
	}
	return h
}

// niceStep returns the smallest of 1, 2, 5 times a power of ten that is
// at least x (and at least 1).
func niceStep(x float64) int {
	if x <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x-1e-9 {
			return int(math.Round(m * p))
		}
	}
	return int(10 * p)
}

// plotHistogram draws a stacked histogram of token lengths by source,
// with axes, ticks, a legend and a vertical line at maxLen, as PNG.
func plotHistogram(w io.Writer, ss []series, bins, maxLen int, keep float64, title string) error {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), &image.Uniform{white}, image.Point{}, draw.Src)
	x0, y0 := marginL, plotH-marginB // origin of the plot area
	x1, y1 := plotW-marginR, marginT
	pw, ph := x1-x0, y0-y1

	drawText(img, title, plotW/2-textWidth(title)/2, 22, black)

	total := 0
	for _, s := range ss {
		total += len(s.lengths)
	}
	if total == 0 {
		drawText(img, "no records", x0+pw/2-textWidth("no records")/2, y1+ph/2, axisGrey)
		return png.Encode(w, img)
	}
	h := binData(ss, bins)
	tallest := 1
	for b := 0; b < h.bins; b++ {
		sum := 0
		for s := range h.counts {
			sum += h.counts[s][b]
		}
		tallest = max(tallest, sum)
	}
	xMax := h.bins * h.binWidth
	if maxLen > xMax {
		xMax = (maxLen/h.binWidth + 1) * h.binWidth
	}
	xOf := func(v int) int { return x0 + int(math.Round(float64(v)/float64(xMax)*float64(pw))) }
	yStep := niceStep(float64(tallest) / 6)
	yMax := (tallest + yStep - 1) / yStep * yStep
	yOf := func(v int) int { return y0 - int(math.Round(float64(v)/float64(yMax)*float64(ph))) }

	// Grid and y ticks.
	for v := 0; v <= yMax; v += yStep {
		y := yOf(v)
		hline(img, x0, x1, y, gridGrey)
		hline(img, x0-4, x0, y, axisGrey)
		label := strconv.Itoa(v)
		drawText(img, label, x0-8-textWidth(label), y+4, axisGrey)
	}
	// Bars, stacked in series order.
	for b := 0; b < h.bins; b++ {
		left, right := xOf(b*h.binWidth)+1, xOf((b+1)*h.binWidth)-1
		if right < left {
			right = left
		}
		base := 0
		for s := range h.counts {
			c := h.counts[s][b]
			if c == 0 {
				continue
			}
			fill(img, left, yOf(base+c), right, yOf(base), seriesColor(s, h.names[s]))
			base += c
		}
	}
	// Axes and x ticks: about 10 labelled ticks on round values.
	hline(img, x0, x1, y0, axisGrey)
	vline(img, x0, y1, y0, axisGrey)
	xStep := niceStep(float64(xMax) / 10)
	for v := 0; v <= xMax; v += xStep {
		x := xOf(v)
		vline(img, x, y0, y0+4, axisGrey)
		label := strconv.Itoa(v)
		drawText(img, label, x-textWidth(label)/2, y0+18, axisGrey)
	}
	drawText(img, "tokens per record", x0+pw/2-textWidth("tokens per record")/2, y0+40, black)
	drawText(img, "records", 8, y1-10, black)

	// The max_len marker, dashed, with its label at the top.
	if maxLen > 0 {
		x := xOf(maxLen)
		for y := y1; y < y0; y += 8 {
			vline(img, x, y, min(y+4, y0), markerRed)
			vline(img, x+1, y, min(y+4, y0), markerRed)
		}
		label := fmt.Sprintf("max_len %d keeps %.1f%%", maxLen, keep*100)
		lx := x + 6
		if lx+textWidth(label) > x1 {
			lx = x - 6 - textWidth(label)
		}
		drawText(img, label, lx, y1+12, markerRed)
	}

	// Legend, top right, one row per series with its count.
	lx := x1 - 8
	for s, name := range h.names {
		n := 0
		for _, c := range h.counts[s] {
			n += c
		}
		label := fmt.Sprintf("%s (%d)", name, n)
		lx = min(lx, x1-8-textWidth(label)-16)
	}
	// A framed white box keeps bars from running through the legend.
	boxTop, boxBottom := y1+28-13, y1+28+(len(h.names)-1)*legendRow+6
	fill(img, lx-6, boxTop, x1-2, boxBottom, white)
	hline(img, lx-6, x1-2, boxTop, gridGrey)
	hline(img, lx-6, x1-2, boxBottom, gridGrey)
	vline(img, lx-6, boxTop, boxBottom, gridGrey)
	vline(img, x1-2, boxTop, boxBottom, gridGrey)
	for s, name := range h.names {
		n := 0
		for _, c := range h.counts[s] {
			n += c
		}
		y := y1 + 28 + s*legendRow
		fill(img, lx, y-9, lx+10, y+1, seriesColor(s, name))
		drawText(img, fmt.Sprintf("%s (%d)", name, n), lx+16, y, black)
	}
	return png.Encode(w, img)
}

func seriesColor(i int, name string) color.RGBA {
	if name == "other" && i == len(palette)-1 {
		return otherGrey
	}
	return palette[i%len(palette)]
}

func hline(img *image.RGBA, xa, xb, y int, c color.RGBA) {
	for x := xa; x <= xb; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, ya, yb int, c color.RGBA) {
	for y := ya; y <= yb; y++ {
		img.SetRGBA(x, y, c)
	}
}

// fill paints the rectangle with corners (xa, ya) and (xb, yb), inclusive.
func fill(img *image.RGBA, xa, ya, xb, yb int, c color.RGBA) {
	draw.Draw(img, image.Rect(min(xa, xb), min(ya, yb), max(xa, xb)+1, max(ya, yb)+1), &image.Uniform{c}, image.Point{}, draw.Src)
}

// drawText writes s with its baseline at y, starting at x, in the 7x13
// fixed font.
func drawText(img *image.RGBA, s string, x, y int, c color.RGBA) {
	d := font.Drawer{Dst: img, Src: &image.Uniform{c}, Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int {
	return font.MeasureString(basicfont.Face7x13, s).Round()
}
