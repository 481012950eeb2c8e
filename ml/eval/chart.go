package eval

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// barChart is a horizontal grouped bar chart: one group of bars per
// category (labelled on the left), one bar per series (model) in each
// group, values along the x axis from 0. Horizontal bars keep long
// category names (sources such as "fim:myrepo") readable in the 7x13
// bitmap face. ml/plot draws line charts only, hence this small renderer.
type barChart struct {
	Title, XLabel string
	Categories    []string
	Series        []string
	// Values[c][s] is series s in category c; NaN leaves the bar out.
	Values [][]float64
	// Max fixes the end of the x axis (0: from the data).
	Max float64
	// Format writes the value at the end of each bar.
	Format string
}

// seriesColors are the bar colours in series order: base in grey-blue,
// the first adapter in orange, then further adapters.
var seriesColors = []color.RGBA{
	{96, 125, 160, 255}, {240, 128, 20, 255}, {44, 160, 44, 255},
	{214, 39, 40, 255}, {148, 103, 189, 255}, {140, 86, 75, 255},
}

var face = basicfont.Face7x13

func textWidth(s string) int { return font.MeasureString(face, s).Round() }

func drawText(img draw.Image, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func fillRect(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// niceStep returns a round tick step that divides span into about n parts.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

const (
	chartWidth = 960
	barH       = 16
	groupGap   = 14
	maxLabel   = 30 // characters of a category label
)

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "~"
}

// draw renders the chart.
func (c *barChart) draw() *image.RGBA {
	black := color.RGBA{0, 0, 0, 255}
	grey := color.RGBA{220, 220, 220, 255}
	labelW := 0
	for _, cat := range c.Categories {
		labelW = max(labelW, textWidth(clip(cat, maxLabel)))
	}
	left := labelW + 20
	right := 70 // room for the value after the longest bar
	top := 64   // title and legend
	bottom := 52
	groupH := len(c.Series)*barH + groupGap
	height := top + max(1, len(c.Categories))*groupH + bottom
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)

	drawText(img, (chartWidth-textWidth(c.Title))/2, 20, c.Title, black)
	// Legend.
	x := left
	for s, name := range c.Series {
		col := seriesColors[s%len(seriesColors)]
		fillRect(img, image.Rect(x, 32, x+14, 44), col)
		drawText(img, x+20, 43, name, black)
		x += 20 + textWidth(name) + 24
	}

	hi := c.Max
	if hi <= 0 {
		for _, row := range c.Values {
			for _, v := range row {
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					hi = max(hi, v)
				}
			}
		}
		if hi <= 0 {
			hi = 1
		}
		hi = math.Ceil(hi/niceStep(hi, 5)) * niceStep(hi, 5)
	}
	plotW := chartWidth - left - right
	xOf := func(v float64) int { return left + int(math.Round(v/hi*float64(plotW))) }
	plotBottom := top + len(c.Categories)*groupH

	// Grid and x ticks.
	stepV := niceStep(hi, 5)
	for v := 0.0; v <= hi*(1+1e-9); v += stepV {
		px := xOf(v)
		fillRect(img, image.Rect(px, top-4, px+1, plotBottom), grey)
		fillRect(img, image.Rect(px, plotBottom, px+1, plotBottom+5), black)
		lbl := trimFloat(v)
		drawText(img, px-textWidth(lbl)/2, plotBottom+18, lbl, black)
	}
	drawText(img, left+(plotW-textWidth(c.XLabel))/2, plotBottom+40, c.XLabel, black)

	for ci, cat := range c.Categories {
		y0 := top + ci*groupH + groupGap/2
		lbl := clip(cat, maxLabel)
		drawText(img, left-8-textWidth(lbl), y0+len(c.Series)*barH/2+5, lbl, black)
		for s := range c.Series {
			v := math.NaN()
			if s < len(c.Values[ci]) {
				v = c.Values[ci][s]
			}
			y := y0 + s*barH
			if math.IsNaN(v) {
				drawText(img, left+4, y+12, "n/a", black)
				continue
			}
			w := min(max(v, 0), hi)
			fillRect(img, image.Rect(left, y+1, xOf(w)+1, y+barH-1), seriesColors[s%len(seriesColors)])
			val := fmt.Sprintf(c.Format, v)
			drawText(img, xOf(w)+5, y+12, val, black)
		}
	}
	// Axes.
	fillRect(img, image.Rect(left, top-4, left+1, plotBottom+1), black)
	fillRect(img, image.Rect(left, plotBottom, left+plotW+1, plotBottom+1), black)
	return img
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.4g", v)
	return s
}

// writePNG draws the chart into path.
func (c *barChart) writePNG(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.draw()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
