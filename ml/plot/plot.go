// Package plot draws the training loss curve as a PNG with the standard
// library's image/png and the fixed 7x13 bitmap face of
// golang.org/x/image/font/basicfont: training and evaluation loss against
// the optimiser step, with labelled axes, ticks and a legend. The numbers
// come from ml/train's metrics; this package only draws.
package plot

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Point is one (x, y) sample.
type Point struct{ X, Y float64 }

// Series is one line of the chart.
type Series struct {
	Name   string
	Color  color.RGBA
	Points []Point
	// Markers draws a dot at each point (for sparse series such as the
	// evaluation loss).
	Markers bool
}

// Chart is a line chart.
type Chart struct {
	Title, XLabel, YLabel string
	Width, Height         int
	Series                []Series
}

// Colours of the default series.
var (
	Blue   = color.RGBA{31, 119, 180, 255}
	Orange = color.RGBA{255, 127, 14, 255}
)

// LossCurve returns the chart of a training run: training loss per step
// and evaluation loss per evaluation.
func LossCurve(train, eval []Point) *Chart {
	c := &Chart{Title: "Loss", XLabel: "optimizer step", YLabel: "loss (nats/token)", Width: 900, Height: 540}
	if len(train) > 0 {
		c.Series = append(c.Series, Series{Name: "train", Color: Blue, Points: train})
	}
	if len(eval) > 0 {
		c.Series = append(c.Series, Series{Name: "eval", Color: Orange, Points: eval, Markers: true})
	}
	return c
}

// WritePNG draws c into the file at path (written atomically).
func (c *Chart) WritePNG(path string) error {
	img := c.Draw()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".plot-*.png")
	if err != nil {
		return err
	}
	if err := png.Encode(tmp, img); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

const (
	marginLeft   = 80
	marginRight  = 20
	marginTop    = 40
	marginBottom = 60
)

// Draw renders c.
func (c *Chart) Draw() *image.RGBA {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = 900
	}
	if h <= 0 {
		h = 540
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	black := color.RGBA{0, 0, 0, 255}
	grey := color.RGBA{225, 225, 225, 255}

	// Data range.
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
				continue
			}
			xmin, xmax = min(xmin, p.X), max(xmax, p.X)
			ymin, ymax = min(ymin, p.Y), max(ymax, p.Y)
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	if ymax == ymin {
		ymin, ymax = ymin-0.5, ymax+0.5
	}
	xticks := niceTicks(xmin, xmax, 8)
	yticks := niceTicks(ymin, ymax, 6)
	xmin, xmax = min(xmin, xticks[0]), max(xmax, xticks[len(xticks)-1])
	ymin, ymax = min(ymin, yticks[0]), max(ymax, yticks[len(yticks)-1])

	x0, x1 := marginLeft, w-marginRight
	y0, y1 := h-marginBottom, marginTop
	px := func(x float64) int { return x0 + int(math.Round((x-xmin)/(xmax-xmin)*float64(x1-x0))) }
	py := func(y float64) int { return y0 - int(math.Round((y-ymin)/(ymax-ymin)*float64(y0-y1))) }

	// Grid, ticks and tick labels.
	for _, t := range xticks {
		x := px(t)
		line(img, x, y0, x, y1, grey)
		line(img, x, y0, x, y0+5, black)
		s := formatTick(t, xticks)
		text(img, x-textWidth(s)/2, y0+20, s, black)
	}
	for _, t := range yticks {
		y := py(t)
		line(img, x0, y, x1, y, grey)
		line(img, x0-5, y, x0, y, black)
		s := formatTick(t, yticks)
		text(img, x0-8-textWidth(s), y+4, s, black)
	}
	// Axes.
	line(img, x0, y0, x1, y0, black)
	line(img, x0, y0, x0, y1, black)
	// Labels and title.
	text(img, (x0+x1)/2-textWidth(c.XLabel)/2, h-15, c.XLabel, black)
	textVertical(img, 8, (y0+y1)/2+textWidth(c.YLabel)/2, c.YLabel, black)
	text(img, w/2-textWidth(c.Title)/2, 22, c.Title, black)

	// Series.
	for _, s := range c.Series {
		var prev *image.Point
		for _, p := range s.Points {
			if math.IsNaN(p.Y) || math.IsInf(p.Y, 0) {
				prev = nil
				continue
			}
			q := image.Point{px(p.X), py(p.Y)}
			if prev != nil {
				thickLine(img, prev.X, prev.Y, q.X, q.Y, s.Color)
			}
			if s.Markers {
				dot(img, q.X, q.Y, 3, s.Color)
			}
			prev = &q
		}
	}
	// Legend, top right.
	lx, ly := x1-110, y1+10
	for _, s := range c.Series {
		thickLine(img, lx, ly, lx+24, ly, s.Color)
		if s.Markers {
			dot(img, lx+12, ly, 3, s.Color)
		}
		text(img, lx+32, ly+4, s.Name, black)
		ly += 18
	}
	return img
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	span := hi - lo
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step) * step
	var out []float64
	for v := start; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	if out[len(out)-1] < hi {
		out = append(out, out[len(out)-1]+step)
	}
	return out
}

func formatTick(v float64, ticks []float64) string {
	step := 1.0
	if len(ticks) > 1 {
		step = ticks[1] - ticks[0]
	}
	decimals := 0
	for d := step; d < 1 && decimals < 6; d *= 10 {
		decimals++
	}
	if math.Abs(v) < step*1e-9 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

var face = basicfont.Face7x13

func textWidth(s string) int { return font.MeasureString(face, s).Round() }

func text(img draw.Image, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// textVertical draws s rotated 90° counter-clockwise with its baseline
// start at (x, y), reading upwards.
func textVertical(img *image.RGBA, x, y int, s string, c color.Color) {
	wdt := textWidth(s)
	tmp := image.NewRGBA(image.Rect(0, 0, wdt, 16))
	text(tmp, 0, 12, s, c)
	for ty := 0; ty < 16; ty++ {
		for tx := 0; tx < wdt; tx++ {
			if _, _, _, a := tmp.At(tx, ty).RGBA(); a > 0 {
				img.Set(x+ty, y-tx, tmp.At(tx, ty))
			}
		}
	}
}

func line(img *image.RGBA, xa, ya, xb, yb int, c color.Color) {
	dx, dy := abs(xb-xa), -abs(yb-ya)
	sx, sy := sign(xb-xa), sign(yb-ya)
	e := dx + dy
	for {
		img.Set(xa, ya, c)
		if xa == xb && ya == yb {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			xa += sx
		} else {
			e += dx
			ya += sy
		}
	}
}

func thickLine(img *image.RGBA, xa, ya, xb, yb int, c color.Color) {
	line(img, xa, ya, xb, yb, c)
	line(img, xa, ya+1, xb, yb+1, c)
	line(img, xa+1, ya, xb+1, yb, c)
}

func dot(img *image.RGBA, x, y, r int, c color.Color) {
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			if dx*dx+dy*dy <= r*r {
				img.Set(x+dx, y+dy, c)
			}
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// String describes the chart (its series and point counts).
func (c *Chart) String() string {
	s := c.Title
	for _, se := range c.Series {
		s += fmt.Sprintf(" %s:%d", se.Name, len(se.Points))
	}
	return s
}
