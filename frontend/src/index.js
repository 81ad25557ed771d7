// MedUI's reading component (Streamlit Components v2). Python sends a small JSON `data` (where the
// voxels are, shape, affine, planes, presets, what to report back); the voxels come over HTTP once,
// and scrolling, windowing, zoom, readout, measurement and overlay styling happen here with no
// Python rerun. Only the slice (Diagnose) and the chosen window go back, debounced.

import css from './style.css'
import { Volume } from './volume.js'
import { makeLut, overlayPixels, contourPixels } from './lut.js'
import { View } from './view.js'

const instances = new WeakMap()

export function mount(component) {
  const { data, parentElement, setStateValue } = component
  let inst = instances.get(parentElement)
  if (inst && inst.url !== data.volume.url) {
    inst.destroy()
    inst = null
  }
  if (!inst) {
    inst = new Reader(parentElement, data, setStateValue)
    instances.set(parentElement, inst)
  } else {
    inst.update(data, setStateValue)
  }
  const gen = ++inst.generation
  return () => {
    if (inst.generation === gen && instances.get(parentElement) === inst) {
      inst.destroy()
      instances.delete(parentElement)
    }
  }
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'testid') e.dataset.testid = v
    else e.setAttribute(k, v)
  }
  if (text !== undefined) e.textContent = text
  return e
}

function fmt(v) {
  if (Array.isArray(v)) return `(${v.join(', ')})`
  return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4)
}

function decodeB64(b64) {
  const s = atob(b64)
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}

class Reader {
  constructor(root, data, setState) {
    this.generation = 0
    this.root = root
    this.setState = setState
    this.url = data.volume.url
    this.meta = data.volume
    this.report = data.report || {}
    this.timers = {}
    this.reported = {}
    this.abort = new AbortController()
    const style = el('style')
    style.textContent = css
    this.box = el('div', { class: 'reader', testid: 'reader' })
    root.appendChild(style)
    root.appendChild(this.box)
    this.style = style
    try {
      this.vol = new Volume(this.meta, this.url)
    } catch (err) {
      this.fail(`The series does not fit in this browser tab (${err.message}).`)
      return
    }
    this.planes = this.meta.planes
    this.nativePlane = this.meta.native_plane
    const init = data.initial || {}
    this.presets = this.meta.presets
    const preset = this.presets.find((p) => p.name === (init.preset || this.meta.preset)) || this.presets[0]
    this.win = {
      preset: init.preset || preset.name,
      center: init.center ?? preset.center,
      width: init.width ?? preset.width,
      invert: init.invert ?? this.meta.invert,
      voi: !!preset.voi_lut && (init.preset === undefined || init.preset === preset.name),
    }
    const nat = this.planes[this.nativePlane]
    const d = this.vol.dims
    this.cur = [Math.floor(d[0] / 2), Math.floor(d[1] / 2), Math.floor(d[2] / 2)]
    const start = data.goto ? data.goto.slice : init.slice ?? Math.floor(nat.n / 2)
    this.cur[nat.axis] = Math.min(nat.n - 1, Math.max(0, nat.reverse ? nat.n - 1 - start : start))
    this.gotoNonce = data.goto ? data.goto.nonce : null
    if (data.goto) this.reported.slice = JSON.stringify(data.goto.slice)
    this.layout = init.layout && (init.layout === 'mpr' || this.planes[init.layout]) ? init.layout : this.nativePlane
    this.tool = 'window'
    this.crosshair = false
    this.smooth = true
    this.measure = null
    this.overlay = null
    this.lutVersion = 0
    this.buildDom(data)
    this.setLayout(this.layout)
    this.applyWindow(false)
    this.setOverlay(data.overlay)
    const t0 = performance.now()
    const first = this.cur[2]
    this.vol.load(first, () => {
      this.schedule()
      this.loadingText(t0)
    }, this.abort.signal).catch((err) => {
      if (err.name !== 'AbortError') this.fail(`The series could not be fetched: ${err.message}`)
    })
  }

  fail(message) {
    this.box.innerHTML = ''
    this.box.appendChild(el('div', { class: 'failed', role: 'alert', testid: 'reader-failed' }, message))
    this.setState('failed', message)
  }

  destroy() {
    this.abort.abort()
    for (const t of Object.values(this.timers)) clearTimeout(t)
    for (const v of this.views || []) v.destroy()
    this.box.remove()
    this.style.remove()
  }

  update(data, setState) {
    this.setState = setState
    this.report = data.report || {}
    this.setOverlay(data.overlay)
    if (data.goto && data.goto.nonce !== this.gotoNonce) {
      // Python's current slice: jump unless it is what this reader reported (then the user may be further on)
      this.gotoNonce = data.goto.nonce
      const said = JSON.stringify(data.goto.slice)
      if (this.reported.slice !== said) {
        this.reported.slice = said
        clearTimeout(this.timers.slice)
        this.gotoSlice(data.goto.slice, true)
      }
    }
  }

  // ---- DOM -------------------------------------------------------------------------------
  buildDom(data) {
    const m = this.meta
    this.box.style.setProperty('--reader-height', `${data.height || 620}px`)
    const main = el('div', { class: 'main' })
    this.stages = el('div', { class: 'stages' })
    const side = el('div', { class: 'side' })
    main.append(this.stages, side)
    const status = el('p', { class: 'status', 'aria-live': 'polite', testid: 'reader-status' })
    this.planeText = el('span', { testid: 'reader-plane' })
    this.sliceText_ = el('span', { testid: 'reader-slice' })
    this.posText = el('span', { testid: 'reader-position' })
    this.winText = el('span', { testid: 'reader-window' })
    this.posSep = el('span', {}, ' · ')
    status.append(this.planeText, ' · ', this.sliceText_, this.posSep, this.posText, ' · ', this.winText)
    this.readout = el('p', { class: 'readout', testid: 'reader-readout' }, 'Hover the image for the value and position.')
    this.measureText = el('p', { class: 'readout', testid: 'reader-measure' })
    this.loading = el('p', { class: 'loading', testid: 'reader-loading', 'data-done': '0' }, 'Loading the series…')
    this.box.append(main, status, this.readout, this.measureText, this.loading)
    if (m.note) this.box.append(el('p', { class: 'note', testid: 'reader-note' }, m.note))

    // Planes
    const names = Object.keys(this.planes)
    if (names.length > 1) {
      const g = this.group(side, 'Plane')
      this.planeButtons = {}
      for (const name of [...names, 'mpr']) {
        const b = el('button', { type: 'button', testid: `reader-plane-${name}` },
          name === 'mpr' ? '3 planes' : this.planes[name].title)
        b.addEventListener('click', () => this.setLayout(name))
        g.appendChild(b)
        this.planeButtons[name] = b
      }
    }
    // Tools
    const tools = this.group(side, 'Left mouse button')
    this.toolButtons = {}
    for (const [name, label] of [['window', 'Window'], ['pan', 'Pan'], ['measure', 'Measure'], ['crosshair', 'Point']]) {
      const b = el('button', { type: 'button', testid: `reader-tool-${name}` }, label)
      b.addEventListener('click', () => this.setTool(name))
      tools.appendChild(b)
      this.toolButtons[name] = b
    }
    this.setTool('window')
    // Window
    if (!m.rgb) {
      const g = this.group(side, 'Window')
      this.presetSelect = el('select', { 'aria-label': 'Window preset', testid: 'reader-preset' })
      for (const p of this.presets) this.presetSelect.appendChild(el('option', { value: p.name }, p.name))
      this.presetSelect.appendChild(el('option', { value: 'Custom' }, 'Custom'))
      this.presetSelect.addEventListener('change', () => this.choosePreset(this.presetSelect.value))
      g.appendChild(this.presetSelect)
      const row = el('div', { class: 'row' })
      this.centerInput = el('input', { type: 'number', 'aria-label': 'Window level (center)', testid: 'reader-center' })
      this.widthInput = el('input', { type: 'number', min: '1', 'aria-label': 'Window width', testid: 'reader-width' })
      for (const [inp, label] of [[this.centerInput, 'L'], [this.widthInput, 'W']]) {
        const lab = el('label', {}, `${label} `)
        lab.appendChild(inp)
        row.appendChild(lab)
        inp.addEventListener('change', () => {
          this.win.center = Number(this.centerInput.value)
          this.win.width = Math.max(1, Number(this.widthInput.value))
          this.win.preset = 'Custom'
          this.win.voi = false
          this.applyWindow(true)
        })
      }
      g.appendChild(row)
    }
    const inv = el('label', { class: 'check' })
    this.invertBox = el('input', { type: 'checkbox', testid: 'reader-invert' })
    this.invertBox.addEventListener('change', () => {
      this.win.invert = this.invertBox.checked
      this.applyWindow(true)
    })
    inv.append(this.invertBox, ' Invert')
    side.appendChild(inv)
    // Zoom
    const z = this.group(side, 'Zoom')
    for (const [label, f] of [['−', 1 / 1.25], ['+', 1.25], ['Reset', 0]]) {
      const b = el('button', { type: 'button', testid: `reader-zoom-${label === 'Reset' ? 'reset' : f > 1 ? 'in' : 'out'}` },
        label)
      b.addEventListener('click', () => {
        for (const v of this.views) {
          if (f === 0) { v.zoom = 1; v.pan = [0, 0] } else v.zoom *= f
        }
        this.schedule()
      })
      z.appendChild(b)
    }
    const cross = el('label', { class: 'check' })
    this.crossBox = el('input', { type: 'checkbox', testid: 'reader-crosshair' })
    this.crossBox.addEventListener('change', () => { this.crosshair = this.crossBox.checked; this.schedule() })
    cross.append(this.crossBox, ' Crosshair')
    side.appendChild(cross)
    this.overlayBox = el('div', { class: 'group overlay-controls' })
    side.appendChild(this.overlayBox)
    side.appendChild(el('p', { class: 'help' },
      'Wheel or ↑ ↓ ← →: slice · PgUp/PgDn: 10 slices · Home/End · right drag: window · middle drag: pan · ' +
      'Ctrl+wheel: zoom · double click: reset'))
  }

  group(parent, title) {
    const g = el('div', { class: 'group', role: 'group', 'aria-label': title })
    g.appendChild(el('span', { class: 'label' }, title))
    parent.appendChild(g)
    return g
  }

  loadingText(t0) {
    const v = this.vol
    const mb = (v.bytes / 1e6).toFixed(1)
    const sent = v.transferred ? `, ${(v.transferred / 1e6).toFixed(1)} MB transferred` : ''
    if (v.done < v.meta.n_chunks) {
      this.loading.textContent = `Loading the series into the browser: ${v.done}/${v.meta.n_chunks} parts…`
    } else {
      const s = ((performance.now() - t0) / 1000).toFixed(1)
      this.loading.textContent = `Series in the browser: ${mb} MB of voxels in ${v.meta.n_chunks} part(s)${sent}, ${s} s.`
      this.loading.dataset.done = '1'
    }
  }

  // ---- layout, tools, window ---------------------------------------------------------------
  setLayout(name) {
    this.layout = name
    for (const v of this.views || []) v.destroy()
    const names = name === 'mpr' ? Object.keys(this.planes) : [name]
    this.stages.className = name === 'mpr' ? 'stages mpr' : 'stages'
    this.views = names.map((n) => new View(this, { ...this.planes[n], name: n }, this.stages))
    for (const v of this.views) this.bind(v)
    this.active = this.views[0]
    if (name === 'mpr' && !this.crosshair) {
      this.crosshair = true
      if (this.crossBox) this.crossBox.checked = true
    }
    for (const [k, b] of Object.entries(this.planeButtons || {})) b.setAttribute('aria-pressed', String(k === name))
    this.schedule()
  }

  setTool(name) {
    this.tool = name
    for (const [k, b] of Object.entries(this.toolButtons)) b.setAttribute('aria-pressed', String(k === name))
  }

  choosePreset(name) {
    const p = this.presets.find((q) => q.name === name)
    if (!p) return
    this.win = { ...this.win, preset: name, center: p.center, width: p.width, voi: !!p.voi_lut }
    this.applyWindow(true)
  }

  applyWindow(report) {
    this.lut = makeLut(this.meta, this.win)
    this.lutVersion += 1
    if (this.presetSelect) {
      this.presetSelect.value = this.win.preset
      this.centerInput.value = Math.round(this.win.center * 100) / 100
      this.widthInput.value = Math.round(this.win.width * 100) / 100
    }
    this.invertBox.checked = this.win.invert
    this.winText.textContent = this.meta.rgb ? 'colour' : this.win.voi ? 'VOI LUT' :
      `W ${fmt(Math.round(this.win.width * 100) / 100)} L ${fmt(Math.round(this.win.center * 100) / 100)}`
    this.schedule()
    if (report) this.reportSoon('window')
  }

  // ---- overlay (Diagnose) ------------------------------------------------------------------
  setOverlay(o) {
    if (!o) {
      this.overlay = null
      this.overlayBox.innerHTML = ''
      this.schedule()
      return
    }
    const prev = this.overlay
    if (prev && prev.key === o.key) return
    const map = decodeB64(o.map)
    const heat = document.createElement('canvas')
    heat.width = o.cols
    heat.height = o.rows
    const edge = document.createElement('canvas')
    edge.width = o.cols
    edge.height = o.rows
    this.overlay = {
      key: o.key, slice: o.slice, map, heat, edge, cols: o.cols, rows: o.rows, colormaps: o.colormaps,
      floor: o.floor, title: o.title,
      opacity: prev ? prev.opacity : o.opacity, colormap: prev ? prev.colormap : o.colormap,
      contour: prev ? prev.contour : o.contour, visible: prev ? prev.visible : true,
    }
    this.paintOverlay()
    if (!prev) this.overlayControls()
    this.overlayTitle.textContent = o.title
  }

  paintOverlay() {
    const o = this.overlay
    const hctx = o.heat.getContext('2d')
    const hd = hctx.createImageData(o.cols, o.rows)
    overlayPixels(o.map, o.colormaps[o.colormap], o.floor, new Uint32Array(hd.data.buffer))
    hctx.putImageData(hd, 0, 0)
    const ectx = o.edge.getContext('2d')
    const ed = ectx.createImageData(o.cols, o.rows)
    if (o.contour > 0) contourPixels(o.map, o.cols, o.rows, o.contour, new Uint32Array(ed.data.buffer))
    ectx.putImageData(ed, 0, 0)
    this.schedule()
  }

  overlayControls() {
    const o = this.overlay
    const g = this.overlayBox
    g.innerHTML = ''
    g.appendChild(el('span', { class: 'label' }, 'Saliency overlay'))
    this.overlayTitle = el('span', { class: 'small', testid: 'reader-overlay-title' })
    g.appendChild(this.overlayTitle)
    const show = el('label', { class: 'check' })
    const showBox = el('input', { type: 'checkbox', testid: 'reader-overlay-show' })
    showBox.checked = o.visible
    showBox.addEventListener('change', () => { this.overlay.visible = showBox.checked; this.schedule() })
    show.append(showBox, ' Show')
    g.appendChild(show)
    const op = el('input', { type: 'range', min: '0', max: '1', step: '0.05', 'aria-label': 'Overlay opacity',
      testid: 'reader-overlay-opacity' })
    op.value = String(o.opacity)
    op.addEventListener('input', () => { this.overlay.opacity = Number(op.value); this.schedule() })
    const opl = el('label', {}, 'Opacity ')
    opl.appendChild(op)
    const cm = el('select', { 'aria-label': 'Overlay colour map', testid: 'reader-overlay-colormap' })
    for (const name of Object.keys(o.colormaps)) cm.appendChild(el('option', { value: name }, name))
    cm.value = o.colormap
    cm.addEventListener('change', () => { this.overlay.colormap = cm.value; this.paintOverlay() })
    const cml = el('label', {}, 'Colour map ')
    cml.appendChild(cm)
    const ct = el('input', { type: 'range', min: '0', max: '1', step: '0.05', 'aria-label': 'Contour level',
      testid: 'reader-overlay-contour' })
    ct.value = String(o.contour)
    ct.addEventListener('change', () => { this.overlay.contour = Number(ct.value); this.paintOverlay() })
    const ctl = el('label', {}, 'Contour at ')
    ctl.appendChild(ct)
    g.append(opl, cml, ctl)
  }

  // ---- slices ------------------------------------------------------------------------------
  gotoSlice(index, quiet) {
    const nat = this.planes[this.nativePlane]
    const i = Math.min(nat.n - 1, Math.max(0, index))
    this.cur[nat.axis] = nat.reverse ? nat.n - 1 - i : i
    this.schedule()
    if (!quiet) this.reportSoon('slice')
  }

  step(view, delta) {
    const p = view.plane
    const n = this.vol.dims[p.axis]
    const i = view.sliceIndex()
    const j = Math.min(n - 1, Math.max(0, i + delta))
    if (j === i) return
    this.cur[p.axis] = p.reverse ? n - 1 - j : j
    this.schedule()
    this.reportSoon('slice')
  }

  sliceText(view) {
    const p = view.plane
    const i = view.sliceIndex()
    const n = this.vol.dims[p.axis]
    let pos = ''
    if (p.name === this.nativePlane && p.name !== 'mpr') {
      const mm = this.meta.positions_mm
      if (mm && !(n === 1 && this.meta.slice_axis === 'position')) pos = `${this.meta.slice_axis} ${mm[i].toFixed(1)} mm`
    } else if (p.letter) {
      const lps = this.vol.lps(...this.cur)
      pos = `${p.letter} ${lps[{ x: 0, y: 1, z: 2 }[p.letter]].toFixed(1)} mm`
    }
    return { slice: `slice ${i + 1}/${n}`, pos }
  }

  // ---- drawing -----------------------------------------------------------------------------
  schedule() {
    if (this.pending) return
    this.pending = requestAnimationFrame(() => {
      this.pending = 0
      this.draw()
    })
  }

  draw() {
    for (const v of this.views) v.draw(false)
    if (this.lastHover && !this.drag) this.hover(...this.lastHover)
    const t = this.sliceText(this.active)
    this.planeText.textContent = this.active.plane.title
    this.sliceText_.textContent = t.slice
    this.posText.textContent = t.pos
    this.posSep.hidden = !t.pos
    this.box.dataset.slice = String(this.active.sliceIndex() + 1)
    if (!this.box.dataset.firstImage && this.vol.sliceLoaded(this.cur[2])) this.box.dataset.firstImage = '1'
    this.box.dispatchEvent(new CustomEvent('reader-drawn', { bubbles: true, composed: true,
      detail: { t: performance.now(), slice: t.slice } }))
  }

  // ---- input -------------------------------------------------------------------------------
  bind(view) {
    const c = view.el
    c.addEventListener('wheel', (e) => {
      e.preventDefault()
      this.active = view
      if (e.ctrlKey || e.metaKey) {
        this.zoomAt(view, e, e.deltaY < 0 ? 1.15 : 1 / 1.15)
      } else {
        this.step(view, e.deltaY > 0 ? 1 : e.deltaY < 0 ? -1 : 0)
      }
    }, { passive: false })
    c.addEventListener('keydown', (e) => {
      const n = this.vol.dims[view.plane.axis]
      const moves = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10,
        Home: -n, End: n }
      if (!(e.key in moves)) return
      e.preventDefault()
      this.active = view
      this.step(view, moves[e.key])
    })
    c.addEventListener('contextmenu', (e) => e.preventDefault())
    c.addEventListener('dblclick', () => { view.zoom = 1; view.pan = [0, 0]; this.schedule() })
    c.addEventListener('pointerdown', (e) => this.press(view, e))
    c.addEventListener('pointermove', (e) => this.move(view, e))
    c.addEventListener('pointerup', (e) => this.release(view, e))
    c.addEventListener('pointerleave', () => {
      this.lastHover = null
      if (!this.drag) this.readout.textContent = 'Hover the image for the value and position.'
    })
  }

  local(view, e) {
    const r = view.el.getBoundingClientRect()
    return [e.clientX - r.left, e.clientY - r.top]
  }

  press(view, e) {
    this.active = view
    view.el.focus({ preventScroll: true })
    const mode = e.button === 2 ? 'window' : e.button === 1 ? 'pan' : this.tool
    const at = this.local(view, e)
    this.drag = { mode, at, start: at, moved: false, view }
    if (mode === 'measure') {
      const p = view.toImage(...at)
      this.measure = { plane: view.plane.name, slice: this.cur[view.plane.axis], a: p, b: p, text: '' }
    }
    view.el.setPointerCapture(e.pointerId)
    e.preventDefault()
  }

  move(view, e) {
    const at = this.local(view, e)
    this.hover(view, at)
    const d = this.drag
    if (!d || d.view !== view) return
    const dx = at[0] - d.at[0]
    const dy = at[1] - d.at[1]
    if (Math.abs(at[0] - d.start[0]) + Math.abs(at[1] - d.start[1]) > 3) d.moved = true
    d.at = at
    if (d.mode === 'window' && !this.meta.rgb) {
      const [lo, hi] = this.meta.value_range
      const k = Math.max(this.win.width, (hi - lo) / 50) / 200
      this.win = { ...this.win, preset: 'Custom', voi: false, width: Math.max(1, this.win.width + dx * k),
        center: this.win.center + dy * k }
      this.applyWindow(false)
    } else if (d.mode === 'pan') {
      view.pan = [view.pan[0] + dx, view.pan[1] + dy]
      this.schedule()
    } else if (d.mode === 'measure') {
      this.measure.b = view.toImage(...at)
      this.measureLength(view)
      this.schedule()
    }
  }

  release(view, e) {
    const d = this.drag
    this.drag = null
    if (!d) return
    if (view.el.hasPointerCapture(e.pointerId)) view.el.releasePointerCapture(e.pointerId)
    if (d.mode === 'window' && d.moved) this.reportSoon('window')
    if ((d.mode === 'crosshair' || d.mode === 'window') && !d.moved) {
      const v = view.voxelAt(...view.toImage(...d.start))
      if (v) {
        this.cur = v
        this.schedule()
        this.reportSoon('slice')
      }
    }
    if (d.mode === 'measure' && !d.moved) this.measure = null
  }

  measureLength(view) {
    const m = this.measure
    const { sx, sy } = view.g
    const unit = this.meta.pixel_unit
    const dx = (m.b[0] - m.a[0]) * (unit === 'px' ? 1 : sx)
    const dy = (m.b[1] - m.a[1]) * (unit === 'px' ? 1 : sy)
    const len = Math.hypot(dx, dy)
    m.text = `${len.toFixed(1)} ${unit}`
    this.measureText.textContent = `Distance ${m.text} (${view.plane.title.toLowerCase()}, ${this.sliceText(view).slice})`
  }

  zoomAt(view, e, f) {
    const at = this.local(view, e)
    const p = view.placement()
    view.zoom *= f
    const q = view.placement()  // keep the image point under the mouse where it is
    view.pan = [view.pan[0] + at[0] - (at[0] - p.ox) * f - q.ox, view.pan[1] + at[1] - (at[1] - p.oy) * f - q.oy]
    this.schedule()
  }

  hover(view, at) {
    this.lastHover = [view, at]
    const [ix, iy] = view.toImage(...at)
    const v = view.voxelAt(ix, iy)
    if (!v) {
      this.readout.textContent = 'Outside the image.'
      return
    }
    const vol = this.vol
    if (!vol.sliceLoaded(v[2])) {
      this.readout.textContent = 'This slice is still loading.'
      return
    }
    const value = vol.value(...v)
    const name = this.meta.rgb ? 'RGB' : this.meta.unit
    let where
    if (this.meta.planes[this.nativePlane].labels && this.nativePlane !== 'native') {
      const [x, y, z] = vol.lps(...v)
      where = `x ${x.toFixed(1)} · y ${y.toFixed(1)} · z ${z.toFixed(1)} mm`
    } else {
      const sp = vol.spacing
      where = `column ${v[0] + 1} · row ${v[1] + 1}` + (this.meta.pixel_unit === 'mm'
        ? ` · ${(v[0] * sp[0]).toFixed(1)} mm → ${(v[1] * sp[1]).toFixed(1)} mm ↓` : ' (pixel spacing unknown)')
    }
    this.readout.textContent = `${name} ${fmt(value)} at ${where}`
    this.readout.dataset.voxel = v.join(',')
    this.readout.dataset.value = String(value)
  }

  // ---- back to Python (debounced; never per wheel step) -------------------------------------
  reportSoon(what) {
    const wanted = what === 'slice' ? this.report.slice : this.report.window
    if (!wanted) return
    clearTimeout(this.timers[what])
    this.timers[what] = setTimeout(() => {
      let value
      if (what === 'slice') {
        const nat = this.planes[this.nativePlane]
        const c = this.cur[nat.axis]
        value = nat.reverse ? nat.n - 1 - c : c
      } else {
        value = { preset: this.win.preset, center: this.win.center, width: this.win.width, invert: this.win.invert,
          layout: this.layout }
      }
      const key = JSON.stringify(value)
      if (this.reported[what] === key) return
      this.reported[what] = key
      this.setState(what, value)
    }, what === 'slice' ? 400 : 700)
  }
}
