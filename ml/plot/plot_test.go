package plot

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestLossCurvePNG(t *testing.T) {
	var train, eval []Point
	for i := 1; i <= 50; i++ {
		train = append(train, Point{float64(i), 3 / float64(i)})
		if i%10 == 0 {
			eval = append(eval, Point{float64(i), 3.2 / float64(i)})
		}
	}
	path := filepath.Join(t.TempDir(), "loss.png")
	if err := LossCurve(train, eval).WritePNG(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 900 || b.Dy() != 540 {
		t.Fatalf("image is %v, want 900x540", b)
	}
	// Both series' colours appear in the plot area.
	found := map[[3]uint32]bool{}
	for y := 0; y < 540; y++ {
		for x := 0; x < 900; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			found[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	for _, c := range []struct {
		name string
		rgb  [3]uint32
	}{{"train", [3]uint32{31, 119, 180}}, {"eval", [3]uint32{255, 127, 14}}, {"text", [3]uint32{0, 0, 0}}} {
		if !found[c.rgb] {
			t.Errorf("no %s pixels in the image", c.name)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	got := niceTicks(0.13, 2.9, 6)
	if got[0] > 0.13 || got[len(got)-1] < 2.9 || len(got) < 4 || len(got) > 10 {
		t.Fatalf("niceTicks(0.13, 2.9) = %v", got)
	}
	if s := formatTick(0.5, []float64{0, 0.5, 1}); s != "0.5" {
		t.Errorf("formatTick = %q, want 0.5", s)
	}
}
