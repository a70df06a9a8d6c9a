#!/usr/bin/env python3
"""Generates assets/console/world.json, the console's world map, from the npm package
`world-atlas` (Natural Earth admin-0 countries as TopoJSON, ISC licence; Natural Earth
itself is public domain) and Debian's `iso-codes` (ISO 3166-1 numeric → alpha-2).

The map is projected once here (Equal Earth) into SVG path strings keyed by alpha-2
code, so the browser needs no mapping library and the binary embeds ~200 KB.

    npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
    apt-get install iso-codes
    python3 tools/gen-world-map.py package/countries-50m.json > assets/console/world.json

world-atlas gives no ISO id to three areas; they get the code GeoIP databases report
for them (Kosovo `XK`, Northern Cyprus `CY`, Somaliland `SO`); Antarctica, the
Indian Ocean Territories (CX and CC in one shape) and the Siachen Glacier are left out.
"""
import json
import math
import sys

WIDTH = 1000.0  # output units across the map
MIN_STEP = 0.7  # an arc keeps a point only this far from the last one it kept
ISO = "/usr/share/iso-codes/json/iso_3166-1.json"
# Areas without an ISO 3166-1 numeric id in world-atlas, by their Natural Earth name.
UNNUMBERED = {"Kosovo": "XK", "N. Cyprus": "CY", "Somaliland": "SO"}
LEFT_OUT = {"AQ"}
# Unnumbered areas left out: two ISO codes in one shape, and a disputed glacier.
LEFT_OUT_NAMES = {"Indian Ocean Ter.", "Siachen Glacier"}

A1, A2, A3, A4 = 1.340264, -0.081106, 0.000893, 0.003796
M = math.sqrt(3) / 2


def equal_earth(lon, lat):
    lam, phi = math.radians(lon), math.radians(lat)
    t = math.asin(M * math.sin(phi))
    t2 = t * t
    t6 = t2 * t2 * t2
    x = lam * math.cos(t) / (M * (A1 + 3 * A2 * t2 + t6 * (7 * A3 + 9 * A4 * t2)))
    y = t * (A1 + A2 * t2 + t6 * (A3 + A4 * t2))
    return x, y


X_MAX = equal_earth(180, 0)[0]
Y_MAX = equal_earth(0, 90)[1]
SCALE = WIDTH / (2 * X_MAX)
HEIGHT = round(2 * Y_MAX * SCALE)


def project(lon, lat):
    x, y = equal_earth(lon, lat)
    return (x + X_MAX) * SCALE, (Y_MAX - y) * SCALE


def decode_arcs(topo):
    """Arcs in degrees, thinned per arc (so neighbours share exactly the same border):
    a point is kept only when it lies MIN_STEP output units from the last one kept."""
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((x * sx + tx, y * sy + ty))
        kept = pts[:1]
        for p in pts[1:-1]:
            if math.dist(project(*p), project(*kept[-1])) >= MIN_STEP:
                kept.append(p)
        kept = kept + pts[-1:] if len(pts) > 1 else kept
        if len(kept) < 4 and len(pts) >= 4 and pts[0] == pts[-1]:
            # A small island on its own arc: keep its shape rather than lose it.
            kept = pts[:-1:max(1, len(pts) // 6)] + pts[-1:]
        arcs.append(kept)
    return arcs


def ring(arcs, idxs):
    pts = []
    for i in idxs:
        a = arcs[i] if i >= 0 else arcs[~i][::-1]
        pts.extend(a if not pts else a[1:])
    return pts


def cut_antimeridian(r):
    """Projected rings. A ring that crosses ±180° (Russia, Fiji) is unwrapped to
    continuous longitudes and drawn twice, clamped to each side of the map's edge:
    clamping a polygon to a half-plane leaves its part inside plus zero-area slivers."""
    lons = [r[0][0]]
    for lon, _ in r[1:]:
        prev = lons[-1]
        lon += 360 * round((prev - lon) / 360)
        lons.append(lon)
    lats = [lat for _, lat in r]
    lo, hi = min(lons), max(lons)
    if lo >= -180 and hi <= 180:
        return [[project(lon, lat) for lon, lat in zip(lons, lats)]]
    out = []
    for shift in (0, 360, -360):
        shifted = [lon + shift for lon in lons]
        if max(shifted) <= -180 or min(shifted) >= 180:
            continue
        out.append([project(min(180, max(-180, lon)), lat) for lon, lat in zip(shifted, lats)])
    return out


def path_of(rings):
    """SVG path data at 0.1 unit precision, dropping points that round together."""
    out = []
    for r in rings:
        last = None
        cmds = []
        for x, y in r:
            p = (round(x * 10), round(y * 10))
            if p == last:
                continue
            if last is None:
                cmds.append("M%s %s" % (fmt(p[0]), fmt(p[1])))
            else:
                cmds.append("l%s %s" % (fmt(p[0] - last[0]), fmt(p[1] - last[1])))
            last = p
        if len(cmds) > 2:
            out.append("".join(cmds) + "z")
    return "".join(out)


def fmt(v):
    s = "%g" % (v / 10)
    return s.replace("0.", ".", 1) if s.startswith("0.") else s.replace("-0.", "-.", 1)


def main():
    topo = json.load(open(sys.argv[1]))
    numeric = {c["numeric"]: c["alpha_2"] for c in json.load(open(ISO))["3166-1"]}
    arcs = decode_arcs(topo)
    shapes = {}
    for g in topo["objects"]["countries"]["geometries"]:
        name = g["properties"]["name"]
        if name in LEFT_OUT_NAMES:
            continue
        code = numeric.get(g.get("id")) or UNNUMBERED.get(name)
        if code is None:
            sys.exit(f"no ISO code for {name} ({g.get('id')})")
        if code in LEFT_OUT:
            continue
        polys = g["arcs"] if g["type"] == "MultiPolygon" else [g["arcs"]]
        rings = [c for poly in polys for r in poly for c in cut_antimeridian(ring(arcs, r))]
        shapes.setdefault(code, []).extend(rings)
    countries = []
    for code in sorted(shapes):
        rings = shapes[code]
        xs = [x for r in rings for x, _ in r]
        ys = [y for r in rings for _, y in r]
        d = path_of(rings)
        entry = {"code": code, "d": d}
        # Too small to see or hit: the console draws a marker at the centre.
        if max(xs) - min(xs) < 4 and max(ys) - min(ys) < 4:
            entry["dot"] = [round((max(xs) + min(xs)) / 2, 1), round((max(ys) + min(ys)) / 2, 1)]
        countries.append(entry)
    outline = [project(180, lat) for lat in range(-90, 91, 2)] + [
        project(-180, lat) for lat in range(90, -91, -2)
    ]
    json.dump(
        {
            "source": "world-atlas 2.0.2 countries-50m (Natural Earth 4.1.0), Equal Earth projection",
            "width": WIDTH,
            "height": HEIGHT,
            "sphere": path_of([outline]),
            "countries": countries,
        },
        sys.stdout,
        separators=(",", ":"),
    )
    sys.stdout.write("\n")


main()
