/**
 * Loss and accuracy per round, drawn with uPlot (a ~50 KB chart library, bundled: no CDN).
 * The same figures are listed in a table under the chart for screen readers and keyboards.
 */

import uPlot from "uplot";

import { h } from "../dom.js";

export interface RoundChart {
  element: HTMLElement;
  update(rounds: readonly { loss: number; accuracy: number }[]): void;
  destroy(): void;
}

const HEIGHT = 220;
/** Tick spacings of the round axis: whole rounds only. */
const ROUND_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

export function roundChart(): RoundChart {
  const box = h("div", { class: "chart", role: "img", "aria-label": "Loss and accuracy per round" });
  const data: uPlot.AlignedData = [[], [], []];
  const options: uPlot.Options = {
    width: 600,
    height: HEIGHT,
    scales: { x: { time: false }, accuracy: { range: [0, 1] } },
    axes: [
      { label: "Round", stroke: "#1d2330", incrs: ROUND_STEPS,
        values: (_, ticks) => ticks.map((t) => (Number.isInteger(t) ? String(t) : "")) },
      { label: "Loss", scale: "loss", stroke: "#1f4fbf" },
      { label: "Accuracy", scale: "accuracy", side: 1, stroke: "#1e6b34", grid: { show: false },
        values: (_, ticks) => ticks.map((t) => `${Math.round(t * 100)}%`) },
    ],
    series: [
      { label: "Round" },
      { label: "Loss", scale: "loss", stroke: "#1f4fbf", width: 2, points: { show: true } },
      { label: "Accuracy", scale: "accuracy", stroke: "#1e6b34", width: 2, dash: [6, 3], points: { show: true },
        value: (_, v) => (v === null ? "–" : `${(v * 100).toFixed(1)}%`) },
    ],
    legend: { show: true, live: false }, // the series' names; the figures are in the table
    cursor: { drag: { x: false, y: false } },
  };
  const plot = new uPlot(options, data, box);
  const resize = new ResizeObserver(() => {
    const width = Math.max(280, Math.floor(box.clientWidth));
    if (width !== plot.width) plot.setSize({ width, height: HEIGHT });
  });
  resize.observe(box);
  return {
    element: box,
    update(rounds) {
      plot.setData([
        rounds.map((_, i) => i + 1),
        rounds.map((r) => (Number.isFinite(r.loss) ? r.loss : null)),
        rounds.map((r) => (Number.isFinite(r.accuracy) ? r.accuracy : null)),
      ]);
    },
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
  };
}
