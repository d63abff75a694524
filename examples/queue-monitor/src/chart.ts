// Throughput over time as three lines in plain SVG: one small chart does not need a
// charting library (and its bundle, updates and CSP needs); this is ~70 lines.

export interface Totals {
  pushed: number
  completed: number
  /** Failed attempts: retried ones plus dead-lettered ones. */
  failed: number
}

type Series = keyof Totals
const SERIES: Series[] = ['pushed', 'completed', 'failed']
const WINDOW = 60 // samples, one a second
const W = 600
const H = 150
const PAD = { left: 34, right: 6, top: 8, bottom: 18 }
const SVG_NS = 'http://www.w3.org/2000/svg'

export class ThroughputChart {
  private readonly rates: Totals[] = []
  private last: Totals | null = null

  constructor(private readonly svg: SVGSVGElement) {}

  /** Add one sample of the running totals, taken about a second after the previous one. */
  sample(totals: Totals, seconds: number): void {
    if (this.last !== null && seconds > 0) {
      // A sidecar that restarted counts from zero again: no negative rates.
      const rate = (k: Series) => Math.max(0, totals[k] - (this.last as Totals)[k]) / seconds
      this.rates.push({ pushed: rate('pushed'), completed: rate('completed'), failed: rate('failed') })
      if (this.rates.length > WINDOW) this.rates.shift()
    }
    this.last = totals
    this.draw()
  }

  private draw(): void {
    const top = niceCeiling(Math.max(1, ...this.rates.flatMap((r) => SERIES.map((k) => r[k]))))
    const x = (i: number) => PAD.left + (i / (WINDOW - 1)) * (W - PAD.left - PAD.right)
    const y = (v: number) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom)
    const offset = WINDOW - this.rates.length // newest sample at the right edge
    const parts: SVGElement[] = []
    for (const v of [0, top / 2, top]) {
      parts.push(el('line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid' }))
      parts.push(el('text', { x: PAD.left - 4, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, fmt(v)))
    }
    parts.push(el('text', { x: PAD.left, y: H - 4, class: 'axis' }, '−1 min'))
    parts.push(el('text', { x: W - PAD.right, y: H - 4, class: 'axis', 'text-anchor': 'end' }, 'now'))
    for (const k of SERIES) {
      const points = this.rates.map((r, i) => `${x(i + offset).toFixed(1)},${y(r[k]).toFixed(1)}`)
      parts.push(el('polyline', { points: points.join(' '), class: `line ${k}` }))
    }
    this.svg.replaceChildren(...parts)
  }
}

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG_NS, name)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  if (text !== undefined) node.textContent = text
  return node
}

/** 1, 2 or 5 times a power of ten, at least `v`: round numbers on the axis. */
function niceCeiling(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v))
  return [1, 2, 5, 10].map((m) => m * p).find((n) => n >= v) ?? 10 * p
}

function fmt(v: number): string {
  return v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)
}
