package main

import (
	"fmt"
	"html"
	"io"
	"maps"
	"slices"
	"strings"
)

// Chart geometry, in SVG user units (pixels at 100 %).
const (
	chartWidth  = 960
	labelWidth  = 430 // the figure's name, left of the bars
	barsWidth   = 290 // the longer of a row's two bars
	rowHeight   = 46
	barHeight   = 14
	chartMargin = 12
	headHeight  = 44
)

// Colours of the bars: the figure by its verdict, the baseline always grey.
const (
	colourMet      = "#2e7d32"
	colourNotMet   = "#c62828"
	colourNoTarget = "#1565c0"
	colourBaseline = "#9e9e9e"
)

// svgChart writes the rows as an SVG bar chart: per figure, its value and the
// same run's baseline as two bars scaled to the larger of the two (the figures
// have different units, so each row has its own scale), the ratio and the
// target beside them, the value's bar coloured by whether the target is met.
// Rows without a value (missing, not run) are listed without bars.
func svgChart(w io.Writer, rs []Row, title string) error {
	height := headHeight + len(rs)*rowHeight + chartMargin
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<title id="chart-title">%s</title>`+"\n", html.EscapeString(title))
	b.WriteString(`<style>text{font-family:system-ui,sans-serif;font-size:12px;fill:#212121}.small{font-size:11px;fill:#616161}.head{font-size:14px;font-weight:600}</style>` + "\n")
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	fmt.Fprintf(&b, `<text class="head" x="%d" y="20">%s</text>`+"\n", chartMargin, html.EscapeString(title))
	legend := chartMargin
	for _, l := range []struct{ colour, text string }{
		{colourMet, "target met"}, {colourNotMet, "target not met"}, {colourNoTarget, "no target"}, {colourBaseline, "baseline, same run"},
	} {
		fmt.Fprintf(&b, `<rect x="%d" y="28" width="10" height="10" fill="%s"/><text class="small" x="%d" y="37">%s</text>`+"\n",
			legend, l.colour, legend+14, l.text)
		legend += 14 + 7*len(l.text) + 18
	}
	for i, r := range rs {
		y := headHeight + i*rowHeight
		if i%2 == 1 {
			fmt.Fprintf(&b, `<rect x="0" y="%d" width="%d" height="%d" fill="#f5f5f5"/>`+"\n", y, chartWidth, rowHeight)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", chartMargin, y+18, html.EscapeString(clip(r.Figure, 62)))
		fmt.Fprintf(&b, `<text class="small" x="%d" y="%d">target %s</text>`+"\n", chartMargin, y+35, html.EscapeString(r.Target))
		x := labelWidth
		switch {
		case r.NotRun != "":
			fmt.Fprintf(&b, `<text class="small" x="%d" y="%d">not run (%s)</text>`+"\n", x, y+18, html.EscapeString(r.NotRun))
			continue
		case r.Value == nil:
			fmt.Fprintf(&b, `<text class="small" x="%d" y="%d">missing</text>`+"\n", x, y+18)
			continue
		}
		scale := *r.Value
		paired := r.BaselineValue != nil && r.Ratio != nil
		if paired {
			scale = max(scale, *r.BaselineValue)
		}
		colour := colourNoTarget
		if r.Met != nil {
			colour = map[bool]string{true: colourMet, false: colourNotMet}[*r.Met]
		}
		bar(&b, x, y+5, *r.Value, scale, colour, num(r.Value)+" "+r.Unit)
		if paired {
			bar(&b, x, y+5+barHeight+4, *r.BaselineValue, scale, colourBaseline, num(r.BaselineValue)+" baseline")
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%.2f ×</text>`+"\n", chartWidth-chartMargin, y+18, *r.Ratio)
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// bar draws one horizontal bar of v on a scale whose top is full, with its label
// after it.
func bar(b *strings.Builder, x, y int, v, full float64, colour, label string) {
	width := 0.0
	if full > 0 && v > 0 {
		width = v / full * barsWidth
	}
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, x, y, width, barHeight, colour)
	fmt.Fprintf(b, `<text class="small" x="%.1f" y="%d">%s</text>`+"\n", float64(x)+width+4, y+barHeight-3, html.EscapeString(label))
}

// clip shortens s to n runes with an ellipsis.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// htmlReport writes a self-contained page: the chart, the table and the run's
// context (no scripts, no external resources).
func htmlReport(w io.Writer, rs []Row, ctx map[string]string, date string) error {
	var chart strings.Builder
	if err := svgChart(&chart, rs, "Benchmarks against their same-run baselines, "+date); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Benchmarks " + html.EscapeString(date) + "</title>\n")
	b.WriteString(`<style>body{font-family:system-ui,sans-serif;margin:1.5rem;color:#212121}table{border-collapse:collapse;font-size:13px}` +
		`th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left}td.n{text-align:right}.no{color:#c62828;font-weight:600}.yes{color:#2e7d32}</style></head><body>` + "\n")
	b.WriteString("<h1>Benchmarks, " + html.EscapeString(date) + "</h1>\n")
	b.WriteString(chart.String())
	b.WriteString("<h2>Figures</h2>\n<table><thead><tr><th scope=\"col\">figure</th><th scope=\"col\">value</th><th scope=\"col\">baseline (same run)</th>" +
		"<th scope=\"col\">baseline value</th><th scope=\"col\">ratio</th><th scope=\"col\">target</th><th scope=\"col\">met</th></tr></thead><tbody>\n")
	for _, r := range rs {
		value, baseline, ratio, met, class := num(r.Value), num(r.BaselineValue), "-", "-", ""
		if r.NotRun != "" {
			value, baseline = "not run ("+r.NotRun+")", "-"
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		if r.Met != nil {
			met, class = map[bool]string{true: "yes", false: "NO"}[*r.Met], map[bool]string{true: "yes", false: "no"}[*r.Met]
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td class=\"n\">%s</td><td>%s</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td>%s</td><td class=\"%s\">%s</td></tr>\n",
			html.EscapeString(r.Figure), html.EscapeString(value), html.EscapeString(r.Baseline), html.EscapeString(baseline),
			ratio, html.EscapeString(r.Target), class, met)
	}
	b.WriteString("</tbody></table>\n<h2>Run</h2>\n<dl>\n")
	for _, k := range slices.Sorted(maps.Keys(ctx)) {
		fmt.Fprintf(&b, "<dt>%s</dt><dd>%s</dd>\n", html.EscapeString(k), html.EscapeString(ctx[k]))
	}
	b.WriteString("</dl>\n</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
