// Grey values to screen colours: the DICOM linear window (PS3.3 C.11.2.1.2.1, as
// medui.reading.display.apply_window computes it), SIGMOID / LINEAR_EXACT, a sampled VOI LUT, invert.

const ALPHA = 0xff000000

function pack(g) {
  return (ALPHA | (g << 16) | (g << 8) | g) >>> 0
}

// value -> 0..255 under the window, or through the sampled VOI LUT when `voi` is given.
export function greyFunction(center, width, fn, voi) {
  if (voi) {
    const { low, high, greys } = voi
    const k = (greys.length - 1) / Math.max(high - low, 1e-6)
    return (v) => greys[Math.min(greys.length - 1, Math.max(0, Math.round((v - low) * k)))]
  }
  const w = Math.max(width, 1)
  if (fn === 'SIGMOID') return (v) => Math.floor(255 / (1 + Math.exp((-4 * (v - center)) / w)))
  if (fn === 'LINEAR_EXACT') {
    const lo = center - w / 2
    return (v) => Math.min(255, Math.max(0, Math.floor(((v - lo) / w) * 255)))
  }
  const low = center - 0.5 - (w - 1) / 2
  const scale = 255 / Math.max(w - 1, 1e-6)
  return (v) => Math.min(255, Math.max(0, Math.floor((v - low) * scale)))
}

// A lookup for `extract`: a 65536-entry table for int16 data (value = stored + intercept).
export function makeLut(meta, win) {
  const grey = greyFunction(win.center, win.width, meta.voi_function, win.voi ? meta.voi : null)
  const inv = win.invert
  if (meta.rgb) {
    return {
      rgb: inv
        ? (r, g, b) => (ALPHA | ((255 - b) << 16) | ((255 - g) << 8) | (255 - r)) >>> 0
        : (r, g, b) => (ALPHA | (b << 16) | (g << 8) | r) >>> 0,
    }
  }
  if (meta.dtype === 'int16') {
    const table = new Uint32Array(65536)
    const icpt = meta.intercept
    for (let s = -32768; s < 32768; s++) {
      const g = grey(s + icpt)
      table[s + 32768] = pack(inv ? 255 - g : g)
    }
    return { table }
  }
  return { grey: (v) => { const g = grey(v); return pack(inv ? 255 - g : g) } }
}

// OpenCV colour maps (sent by the server as 256 RGB triples) with the overlay's alpha ramp:
// alpha rises from 0 at `floor` to 1 at the top, as medui.ai.overlay.overlay_rgb blends.
export function overlayPixels(map, cmap, floor, out) {
  const k = 1 / Math.max(1 - floor, 1e-6)
  for (let i = 0; i < map.length; i++) {
    const s = map[i]
    const a = Math.min(1, Math.max(0, (s / 255 - floor) * k))
    const c = cmap[s]
    out[i] = ((Math.round(a * 255) << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0
  }
}

// White pixels on the boundary of {map >= level}: the contour at a chosen level.
export function contourPixels(map, W, H, level, out) {
  const t = Math.round(level * 255)
  out.fill(0)
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x
      if (map[i] < t) continue
      const edge = x === 0 || y === 0 || x === W - 1 || y === H - 1 ||
        map[i - 1] < t || map[i + 1] < t || map[i - W] < t || map[i + W] < t
      if (edge) out[i] = 0xffffffff
    }
  }
}
