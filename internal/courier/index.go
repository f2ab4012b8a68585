package courier

import (
	"cmp"
	"math"
	"slices"
)

// The grid divides the globe into cells of cellDeg x cellDeg degrees (see the package documentation for
// why a grid). Rows count from the south pole, columns from the antimeridian eastwards.
const (
	cellDeg = 0.01
	numRows = 18000 // 180 / cellDeg
	numCols = 36000 // 360 / cellDeg
)

type cellKey struct{ row, col int32 }

func cellRow(lat float64) int32 {
	r := int32(math.Floor((lat + 90) / cellDeg))
	return min(max(r, 0), numRows-1)
}

func cellCol(lng float64) int32 {
	c := int32(math.Floor((lng + 180) / cellDeg))
	// 180 and -180 are the same meridian: column numCols wraps to 0.
	return ((c % numCols) + numCols) % numCols
}

// grid is the spatial index of located couriers. It is not safe for concurrent use: the live state's
// mutex guards it.
type grid struct {
	cells map[cellKey]map[string]*entry
	size  int
}

func newGrid() *grid { return &grid{cells: make(map[cellKey]map[string]*entry)} }

// put indexes e at its current location, moving it from its previous cell if needed.
func (g *grid) put(e *entry) {
	k := cellKey{cellRow(e.loc.Lat), cellCol(e.loc.Lng)}
	if e.indexed {
		if e.cell == k {
			return
		}
		g.remove(e)
	}
	m := g.cells[k]
	if m == nil {
		m = make(map[string]*entry)
		g.cells[k] = m
	}
	m[e.c.ID] = e
	e.cell, e.indexed = k, true
	g.size++
}

func (g *grid) remove(e *entry) {
	if !e.indexed {
		return
	}
	m := g.cells[e.cell]
	delete(m, e.c.ID)
	if len(m) == 0 {
		delete(g.cells, e.cell)
	}
	e.indexed = false
	g.size--
}

// hit is one courier found by a search.
type hit struct {
	e    *entry
	dist float64
}

func compareHits(a, b hit) int {
	if c := cmp.Compare(a.dist, b.dist); c != 0 {
		return c
	}
	return cmp.Compare(a.e.c.ID, b.e.c.ID)
}

// best keeps the limit best hits seen so far in a max-heap (the worst kept hit on top), so a search
// costs O(n log limit) however many couriers match.
type best struct {
	limit int
	h     []hit
	// cosMax is at most the cosine of the latitude of the center and of every point considered (0 when
	// unknown); once best is full, latWin and lngWin are the latitude and longitude differences in
	// degrees beyond which a point is surely farther than the worst kept hit, so it is skipped without
	// admits or trigonometry (add would refuse it).
	cosMax         float64
	latWin, lngWin float64
}

func (b *best) full() bool { return len(b.h) == b.limit }

// worst returns the worst kept hit; call it only when full.
func (b *best) worst() hit { return b.h[0] }

func (b *best) add(x hit) {
	if len(b.h) < b.limit {
		b.h = append(b.h, x)
		for i := len(b.h) - 1; i > 0; {
			p := (i - 1) / 2
			if compareHits(b.h[p], b.h[i]) >= 0 {
				break
			}
			b.h[p], b.h[i] = b.h[i], b.h[p]
			i = p
		}
		if b.full() {
			b.tighten()
		}
		return
	}
	if compareHits(x, b.h[0]) >= 0 {
		return
	}
	b.h[0] = x
	for i := 0; ; {
		l, r, top := 2*i+1, 2*i+2, i
		if l < len(b.h) && compareHits(b.h[l], b.h[top]) > 0 {
			top = l
		}
		if r < len(b.h) && compareHits(b.h[r], b.h[top]) > 0 {
			top = r
		}
		if top == i {
			break
		}
		b.h[i], b.h[top] = b.h[top], b.h[i]
		i = top
	}
	b.tighten()
}

// tighten sets latWin and lngWin from the worst kept hit w. A point whose latitudes differ by Δφ is at
// least R·Δφ away (latWindow); one whose longitudes differ by Δλ is, by the haversine formula, at least
// 2R·asin(cosMax·sin(Δλ/2)) away, which exceeds w when Δλ > 2·asin(sin(w/2R)/cosMax). Both windows keep
// a margin for rounding, so a skipped point is farther than w by far more than the error of Distance.
func (b *best) tighten() {
	w := b.worst().dist
	b.latWin = latWindow(w)
	b.lngWin = 360 // no bound
	if c := b.cosMax - 1e-12; c > 0 && w/(2*EarthRadiusMeters) < math.Pi/2 {
		if s := math.Sin(w/(2*EarthRadiusMeters)) / c; s < 1 {
			b.lngWin = deg(2*math.Asin(s))*(1+1e-9) + 1e-12
		}
	}
}

// sorted returns the kept hits nearest first.
func (b *best) sorted() []hit {
	slices.SortFunc(b.h, compareHits)
	return b.h
}

// consider adds e to b if admits accepts it and it lies within radius of lat, lng. The latitude test
// first skips most far couriers without trigonometry: a point |Δlat| away is at least that far; once b
// is full, so do its windows around the worst kept hit (tighten).
func (b *best) consider(e *entry, lat, lng, radius, dLat float64, admits func(*entry) bool) {
	dlat := math.Abs(e.loc.Lat - lat)
	if dlat > dLat {
		return
	}
	if b.full() {
		dlng := math.Abs(e.loc.Lng - lng)
		if dlng > 180 {
			dlng = 360 - dlng
		}
		if dlat > b.latWin || dlng > b.lngWin {
			return
		}
	}
	if !admits(e) {
		return
	}
	if d := Distance(lat, lng, e.loc.Lat, e.loc.Lng); d <= radius {
		b.add(hit{e, d})
	}
}

// latWindow returns the latitude difference beyond which a point is surely farther than radius, with a
// margin for rounding.
func latWindow(radius float64) float64 { return deg(radius/EarthRadiusMeters)*(1+1e-9) + 1e-12 }

// nearby returns up to limit indexed couriers that accept admits within radius meters of lat, lng,
// nearest first, ties broken by id.
//
// It visits the cells of the box that bounds the search circle in rings around the center cell. After
// ring k every unvisited cell is at least minDist(k) away, so the search stops as soon as that exceeds the
// radius or the limit-th best candidate is nearer than it. When the box has more cells than there are
// indexed couriers (huge radii near the poles), scanning the couriers is cheaper and it does that instead.
func (g *grid) nearby(lat, lng, radius float64, limit int, admits func(*entry) bool) []hit {
	if limit <= 0 || g.size == 0 {
		return nil
	}
	b := boxAround(lat, lng, radius)
	if b.cells() > int64(g.size) {
		return g.scan(lat, lng, radius, limit, admits)
	}
	return g.rings(lat, lng, radius, limit, admits, b)
}

// cellBox is a box of cells relative to a center cell: rows ci+iLo..ci+iHi, columns cj+jLo..cj+jHi
// (wrapping at the antimeridian, each column at most once).
type cellBox struct {
	ci, cj, iLo, iHi, jLo, jHi int32
}

func (b cellBox) cells() int64 { return int64(b.iHi-b.iLo+1) * int64(b.jHi-b.jLo+1) }

// boxAround returns the cells that may hold points within radius meters of lat, lng.
func boxAround(lat, lng, radius float64) cellBox {
	delta := radius / EarthRadiusMeters // angular radius
	dLat := deg(delta)
	b := cellBox{ci: cellRow(lat), cj: cellCol(lng)}
	b.iLo = max(cellRow(lat-dLat)-b.ci-1, -b.ci)
	b.iHi = min(cellRow(lat+dLat)-b.ci+1, numRows-1-b.ci)
	b.jLo, b.jHi = -numCols/2, numCols-numCols/2-1 // every column, each once
	if math.Abs(lat)+dLat < 90 {
		// The widest longitude extent of a spherical cap centered at lat.
		if s := math.Sin(delta) / math.Cos(rad(lat)); s < 1 {
			span := int32(math.Ceil(deg(math.Asin(s))/cellDeg)) + 1
			if 2*span+1 < numCols {
				b.jLo, b.jHi = -span, span
			}
		}
	}
	return b
}

// rings is nearby by visiting the cells of b in rings around its center cell.
func (g *grid) rings(lat, lng, radius float64, limit int, admits func(*entry) bool, b cellBox) []hit {
	ci, cj, iLo, iHi, jLo, jHi := b.ci, b.cj, b.iLo, b.iHi, b.jLo, b.jHi
	dLat := deg(radius / EarthRadiusMeters)
	window := latWindow(radius)

	// minDist(k) bounds the distance to any cell outside ring k from below. A cell k+1 rows away is at
	// least k rows of latitude away; one k+1 columns away differs by at least k columns of longitude, and
	// by the haversine formula two points whose latitudes are within ±maxLat and whose longitudes differ
	// by dl are at least 2R·asin(cos(maxLat)·sin(dl/2)) apart, which is also below the latitude bound.
	cosMax := math.Cos(rad(min(math.Abs(lat)+dLat+cellDeg, 90)))
	minDist := func(k int32) float64 {
		d := 2 * EarthRadiusMeters * math.Asin(min(cosMax*math.Sin(float64(k)*rad(cellDeg)/2), 1))
		return d*(1-1e-9) - 1e-6 // stay below the true bound despite rounding
	}

	top := best{limit: limit, cosMax: cosMax}
	visit := func(di, dj int32) {
		col := ((cj+dj)%numCols + numCols) % numCols
		for _, e := range g.cells[cellKey{ci + di, col}] {
			top.consider(e, lat, lng, radius, window, admits)
		}
	}
	kMax := max(-iLo, iHi, -jLo, jHi)
	for k := int32(0); k <= kMax; k++ {
		for di := max(iLo, -k); di <= min(iHi, k); di++ {
			if di == -k || di == k {
				for dj := max(jLo, -k); dj <= min(jHi, k); dj++ {
					visit(di, dj)
				}
				continue
			}
			if -k >= jLo {
				visit(di, -k)
			}
			if k != 0 && k <= jHi {
				visit(di, k)
			}
		}
		bound := minDist(k)
		if bound > radius || top.full() && top.worst().dist < bound {
			break
		}
	}
	return top.sorted()
}

// scan is nearby by visiting every indexed courier.
func (g *grid) scan(lat, lng, radius float64, limit int, admits func(*entry) bool) []hit {
	window := latWindow(radius)
	top := best{limit: limit, cosMax: math.Cos(rad(min(math.Abs(lat)+window, 90)))}
	for _, m := range g.cells {
		for _, e := range m {
			top.consider(e, lat, lng, radius, window, admits)
		}
	}
	return top.sorted()
}
