// Two small <canvas> charts for the dashboard: a line chart (series over time)
// and a bar chart (vertical or horizontal). Written here rather than vendored
// so the dashboard stays three small files with nothing fetched at run time.
//
// Both read their colours from CSS custom properties, so they follow the
// light/dark theme, and remember their last input so they can redraw
// themselves when the canvas is resized or the theme changes.
"use strict";

const Charts = (() => {
  const FONT = "12px system-ui, -apple-system, Segoe UI, sans-serif";
  const PAD = { top: 26, right: 14, bottom: 24, left: 52 };

  // The palette is written with CSS light-dark(), which getPropertyValue()
  // returns unresolved; a hidden element's computed `color` resolves it to
  // the rgb() a canvas understands.
  let probe = null;
  function cssColor(name) {
    if (!probe) {
      probe = document.createElement("span");
      probe.hidden = true;
      document.body.append(probe);
    }
    probe.style.color = `var(${name})`;
    return getComputedStyle(probe).color;
  }

  /** The theme's colours, read at draw time so a theme switch applies at once. */
  function theme() {
    return {
      fg: cssColor("--fg"),
      muted: cssColor("--muted"),
      grid: cssColor("--grid"),
      accent: cssColor("--accent"),
          };
  }

  const SERIES = 6;

  /** The n-th series colour, as the custom property's name. */
  function color(i) {
    return `--series-${((i % SERIES) + SERIES) % SERIES}`;
  }

  /**
   * A colour to paint with: a custom property's name (`--series-2`) is
   * resolved now, so a redraw after a theme switch picks the new palette.
   */
  function paint(c, i) {
    const name = c || color(i);
    return name.startsWith("--") ? cssColor(name) : name;
  }

  /**
   * Sizes the canvas backing store to its CSS box times the pixel ratio (so
   * lines stay crisp on high-DPI screens) and returns a context in CSS pixels.
   */
  function setup(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(canvas.clientWidth, 50);
    const height = Math.max(canvas.clientHeight, 50);
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;
    return { ctx, width, height };
  }

  /**
   * A round axis maximum at or above `v` whose quarters (the grid lines) are
   * round too: 1, 2, 4 or 8 times a power of ten. Counts never get
   * fractional grid lines: their axis goes to 4 at least.
   */
  function niceMax(v, integer) {
    if (integer) v = Math.max(v, 4);
    if (!(v > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(v));
    for (const step of [1, 2, 4, 8, 10]) {
      if (v <= step * power) return step * power;
    }
    return 10 * power;
  }

  /** Short numbers for axis labels: 0.025, 1.5, 12, 1.2k, 3.4M. */
  function shortNumber(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
    if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
    if (a >= 10 || a === 0) return `${Math.round(v)}`;
    return `${+v.toPrecision(2)}`;
  }

  function lastFinite(values) {
    for (let i = values.length - 1; i >= 0; i--) {
      if (Number.isFinite(values[i])) return values[i];
    }
    return null;
  }

  function emptyMessage(ctx, width, height, text) {
    ctx.fillStyle = theme().muted;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(text, width / 2, height / 2);
  }

  /** Horizontal grid lines with value labels on the left. */
  function yGrid(ctx, t, box, max, format) {
    ctx.strokeStyle = t.grid;
    ctx.fillStyle = t.muted;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = Math.round(box.bottom - ((box.bottom - box.top) * i) / 4) + 0.5;
      ctx.beginPath();
      ctx.moveTo(box.left, y);
      ctx.lineTo(box.right, y);
      ctx.stroke();
      ctx.fillText(format((max * i) / 4), box.left - 6, y);
    }
  }

  /** A legend across the top: a swatch and a label per series. */
  function legend(ctx, t, items, x) {
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    for (const item of items) {
      ctx.fillStyle = item.color;
      ctx.fillRect(x, 8, 10, 10);
      ctx.fillStyle = t.fg;
      ctx.fillText(item.label, x + 14, 13);
      x += ctx.measureText(item.label).width + 30;
    }
  }

  /**
   * Starts drawing `canvas` with `draw(canvas, options)`: remembers both, so
   * resizes and theme switches can redraw it, and returns a cleared context
   * and the theme's colours.
   */
  function begin(canvas, draw, options) {
    canvas._chart = { draw, options };
    canvas.dataset.chart = draw.name;
    return { ...setup(canvas), t: theme() };
  }

  /**
   * Line chart of series over time.
   * Colours are CSS colours or custom property names (`--series-1`).
   * options: { times: [ms since epoch], series: [{ label, values, color }],
   *            format(v) for the y axis, min max for the y axis }
   */
  function lineChart(canvas, options) {
    const { ctx, width, height, t } = begin(canvas, lineChart, options);
    const times = options.times || [];
    // What is drawn, as data attributes: for people inspecting the page
    // and for the browser test, which cannot read pixels.
    canvas.dataset.points = String(times.length);
    canvas.dataset.last = JSON.stringify(
      Object.fromEntries(options.series.map((s) => [s.label, lastFinite(s.values)])),
    );
    if (times.length < 2) {
      emptyMessage(ctx, width, height, "collecting data…");
      return;
    }
    const format = options.format || shortNumber;
    const box = { left: PAD.left, right: width - PAD.right, top: PAD.top, bottom: height - PAD.bottom };
    const all = options.series.flatMap((s) => s.values.filter(Number.isFinite));
    const max = niceMax(Math.max(options.min || 0, ...all));
    yGrid(ctx, t, box, max, format);

    // x: time, oldest at the left; labels say how long ago, which reads
    // better than clock times on a live chart.
    const t0 = times[0];
    const t1 = times[times.length - 1];
    const span = Math.max(t1 - t0, 1);
    const x = (time) => box.left + ((time - t0) / span) * (box.right - box.left);
    const y = (v) => box.bottom - (v / max) * (box.bottom - box.top);
    ctx.fillStyle = t.muted;
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText(`−${Math.round(span / 1000)} s`, box.left, box.bottom + 6);
    ctx.textAlign = "right";
    ctx.fillText("now", box.right, box.bottom + 6);

    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    options.series.forEach((s, i) => {
      ctx.strokeStyle = paint(s.color, i);
      ctx.beginPath();
      let started = false;
      s.values.forEach((v, j) => {
        if (!Number.isFinite(v)) return;
        if (started) ctx.lineTo(x(times[j]), y(v));
        else ctx.moveTo(x(times[j]), y(v));
        started = true;
      });
      ctx.stroke();
      // A dot on the newest value, so a series with a single point shows too.
      const j = s.values.length - 1;
      if (Number.isFinite(s.values[j])) {
        ctx.fillStyle = ctx.strokeStyle;
        ctx.beginPath();
        ctx.arc(x(times[j]), y(s.values[j]), 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    });
    legend(
      ctx,
      t,
      options.series.map((s, i) => {
        const last = lastFinite(s.values);
        return { label: `${s.label} ${last === null ? "–" : format(last)}`, color: paint(s.color, i) };
      }),
      box.left,
    );
  }

  /**
   * Bar chart.
   * options: { bars: [{ label, value, color, note }], horizontal, max,
   *            integer (counts), format(v), limit: { value, label } (a dashed
   *            marker, e.g. a budget, horizontal only),
   *            empty: text when there are no bars }
   */
  function barChart(canvas, options) {
    const { ctx, width, height, t } = begin(canvas, barChart, options);
    const bars = options.bars || [];
    canvas.dataset.points = String(bars.length);
    canvas.dataset.values = JSON.stringify(Object.fromEntries(bars.map((b) => [b.label, b.value])));
    if (bars.length === 0) {
      emptyMessage(ctx, width, height, options.empty || "no data yet");
      return;
    }
    const format = options.format || shortNumber;
    const max = options.max || niceMax(Math.max(...bars.map((b) => b.value)), options.integer);
    // A limit far beyond the bars (a 16 GiB budget over 200 MiB models) would
    // squash them to slivers: it is drawn only when it fits the scale.
    const limit = options.limit && options.limit.value > 0 && options.limit.value <= max ? options.limit : null;
    if (options.horizontal) {
      horizontalBars(ctx, t, { width, height }, bars, max, format, limit);
    } else {
      verticalBars(ctx, t, { width, height }, bars, max, format);
    }
  }

  function verticalBars(ctx, t, size, bars, max, format) {
    const box = { left: PAD.left, right: size.width - PAD.right, top: 14, bottom: size.height - PAD.bottom };
    yGrid(ctx, t, box, max, format);
    const slot = (box.right - box.left) / bars.length;
    const barWidth = Math.min(slot * 0.7, 56);
    bars.forEach((bar, i) => {
      const cx = box.left + slot * (i + 0.5);
      const h = (Math.min(bar.value, max) / max) * (box.bottom - box.top);
      ctx.fillStyle = paint(bar.color, i);
      roundedRect(ctx, cx - barWidth / 2, box.bottom - h, barWidth, h, 4);
      ctx.fillStyle = t.muted;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.fillText(clip(ctx, bar.label, slot - 4), cx, box.bottom + 6);
      if (bar.value > 0) {
        ctx.fillStyle = t.fg;
        ctx.textBaseline = "bottom";
        ctx.fillText(format(bar.value), cx, box.bottom - h - 2);
      }
    });
  }

  function horizontalBars(ctx, t, size, bars, max, format, limit) {
    const labelWidth = Math.min(
      Math.max(...bars.map((b) => ctx.measureText(b.label).width)) + 12,
      size.width * 0.4,
    );
    const noteWidth = Math.max(...bars.map((b) => ctx.measureText(b.note || format(b.value)).width)) + 12;
    const box = { left: labelWidth, right: size.width - noteWidth, top: 8, bottom: size.height - (limit ? 22 : 8) };
    const slot = (box.bottom - box.top) / bars.length;
    const barHeight = Math.min(slot * 0.66, 26);
    const scale = (v) => (Math.min(v, max) / max) * (box.right - box.left);
    bars.forEach((bar, i) => {
      const cy = box.top + slot * (i + 0.5);
      ctx.fillStyle = t.grid;
      roundedRect(ctx, box.left, cy - barHeight / 2, box.right - box.left, barHeight, 4);
      ctx.fillStyle = paint(bar.color, i);
      roundedRect(ctx, box.left, cy - barHeight / 2, scale(bar.value), barHeight, 4);
      ctx.fillStyle = t.fg;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillText(clip(ctx, bar.label, labelWidth - 10), box.left - 8, cy);
      ctx.textAlign = "left";
      ctx.fillStyle = t.muted;
      ctx.fillText(bar.note || format(bar.value), box.right + 6, cy);
    });
    if (limit) {
      const x = Math.round(box.left + scale(limit.value)) + 0.5;
      ctx.strokeStyle = t.accent;
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      ctx.moveTo(x, box.top);
      ctx.lineTo(x, box.bottom + 4);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = t.accent;
      ctx.textAlign = "right";
      ctx.textBaseline = "top";
      ctx.fillText(limit.label, x, box.bottom + 6);
    }
  }

  function roundedRect(ctx, x, y, w, h, r) {
    if (w <= 0 || h <= 0) return;
    ctx.beginPath();
    ctx.roundRect(x, y, w, h, Math.min(r, w / 2, h / 2));
    ctx.fill();
  }

  /** Cuts `text` with an ellipsis to fit `width` pixels. */
  function clip(ctx, text, width) {
    if (ctx.measureText(text).width <= width) return text;
    let s = text;
    while (s.length > 1 && ctx.measureText(`${s}…`).width > width) s = s.slice(0, -1);
    return `${s}…`;
  }

  /** Redraws every chart on the page (after a resize or a theme switch). */
  function redrawAll() {
    for (const canvas of document.querySelectorAll("canvas")) {
      if (canvas._chart) canvas._chart.draw(canvas, canvas._chart.options);
    }
  }

  // Canvases follow their CSS box: redraw when it changes size.
  const resized = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = entry.target._chart;
      if (chart) chart.draw(entry.target, chart.options);
    }
  });
  function observe(canvas) {
    resized.observe(canvas);
  }

  return { lineChart, barChart, color, redrawAll, observe };
})();
