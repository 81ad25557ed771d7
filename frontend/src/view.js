// One viewport: a plane of the volume on a canvas at its physical aspect, with zoom and pan,
// orientation labels, crosshair, the distance measurement and the saliency overlay.

import { planeGeometry, sliceIndex, toVoxel, extract } from './volume.js'

export class View {
  constructor(reader, plane, host) {
    this.reader = reader
    this.plane = plane
    this.el = document.createElement('div')
    this.el.className = 'stage'
    this.el.tabIndex = 0
    this.el.setAttribute('role', 'img')
    this.el.setAttribute('aria-label', `${plane.title} view: mouse wheel or arrow keys move through slices`)
    this.el.dataset.plane = plane.name
    this.canvas = document.createElement('canvas')
    this.canvas.dataset.testid = 'reader-canvas'
    this.el.appendChild(this.canvas)
    this.labels = {}
    for (const side of ['left', 'right', 'top', 'bottom']) {
      const s = document.createElement('span')
      s.className = `orient ${side}`
      s.dataset.testid = `reader-orient-${side}`
      s.textContent = plane.labels ? plane.labels[side] : ''
      this.el.appendChild(s)
      this.labels[side] = s
    }
    this.caption = document.createElement('span')
    this.caption.className = 'caption'
    this.el.appendChild(this.caption)
    host.appendChild(this.el)
    this.ctx = this.canvas.getContext('2d')
    const g = planeGeometry(reader.vol, plane)
    this.g = g
    this.img = document.createElement('canvas')
    this.img.width = g.W
    this.img.height = g.H
    this.imgCtx = this.img.getContext('2d')
    this.imageData = this.imgCtx.createImageData(g.W, g.H)
    this.buf = new Uint32Array(this.imageData.data.buffer)
    this.zoom = 1
    this.pan = [0, 0]
    this.key = ''
    this.resize = new ResizeObserver(() => this.reader.schedule())
    this.resize.observe(this.el)
  }

  destroy() {
    this.resize.disconnect()
    this.el.remove()
  }

  // Where the image lies on the canvas (CSS pixels): origin and size of one image pixel.
  placement() {
    const cw = this.el.clientWidth
    const ch = this.el.clientHeight
    const { W, H, sx, sy } = this.g
    const fit = Math.min(cw / (W * sx), ch / (H * sy))
    const px = sx * fit * this.zoom
    const py = sy * fit * this.zoom
    const ox = (cw - W * px) / 2 + this.pan[0]
    const oy = (ch - H * py) / 2 + this.pan[1]
    return { ox, oy, px, py, cw, ch }
  }

  // Image pixel (fractional) under a point of the canvas (CSS pixels).
  toImage(x, y) {
    const p = this.placement()
    return [(x - p.ox) / p.px, (y - p.oy) / p.py]
  }

  // The voxel (col, row, slice) under image pixel (x, y) on the cursor's slice; null outside.
  voxelAt(ix, iy) {
    const { W, H } = this.g
    const x = Math.floor(ix)
    const y = Math.floor(iy)
    if (x < 0 || y < 0 || x >= W || y >= H) return null
    const v = this.reader.cur.slice()
    v[this.plane.h.axis] = toVoxel(x, W, this.plane.h.reverse)
    v[this.plane.v.axis] = toVoxel(y, H, this.plane.v.reverse)
    return v
  }

  // Image pixel of a voxel in this plane (its centre).
  imageOf(v) {
    const { W, H } = this.g
    return [toVoxel(v[this.plane.h.axis], W, this.plane.h.reverse) + 0.5,
      toVoxel(v[this.plane.v.axis], H, this.plane.v.reverse) + 0.5]
  }

  sliceIndex() {
    return sliceIndex(this.reader.vol, this.plane, this.reader.cur)
  }

  draw(force) {
    const r = this.reader
    const dpr = window.devicePixelRatio || 1
    const p = this.placement()
    const cw = Math.max(1, Math.round(p.cw * dpr))
    const ch = Math.max(1, Math.round(p.ch * dpr))
    if (this.canvas.width !== cw || this.canvas.height !== ch) {
      this.canvas.width = cw
      this.canvas.height = ch
    }
    const s = r.cur[this.plane.axis]
    const key = `${s}:${r.lutVersion}:${r.vol.done}`
    if (force || key !== this.key) {
      extract(r.vol, this.plane, r.cur, r.lut, this.buf)
      this.imgCtx.putImageData(this.imageData, 0, 0)
      this.key = key
    }
    const ctx = this.ctx
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0)
    ctx.fillStyle = '#000'
    ctx.fillRect(0, 0, p.cw, p.ch)
    ctx.imageSmoothingEnabled = p.px < 1 || r.smooth
    const { W, H } = this.g
    ctx.drawImage(this.img, p.ox, p.oy, W * p.px, H * p.py)
    this.el.dataset.box = [p.ox, p.oy, W * p.px, H * p.py].map((v) => v.toFixed(2)).join(',')
    this.drawOverlay(ctx, p)
    if (r.crosshair) this.drawCrosshair(ctx, p)
    this.drawMeasure(ctx, p)
    const t = r.sliceText(this)
    this.caption.textContent = t.pos ? `${t.slice} · ${t.pos}` : t.slice
  }

  drawOverlay(ctx, p) {
    const o = this.reader.overlay
    if (!o || !o.visible || this.plane.name !== this.reader.nativePlane || this.sliceIndex() !== o.slice) return
    const { W, H } = this.g
    ctx.save()
    ctx.imageSmoothingEnabled = true
    ctx.globalAlpha = o.opacity
    ctx.drawImage(o.heat, p.ox, p.oy, W * p.px, H * p.py)
    ctx.globalAlpha = 1
    if (o.contour > 0) {
      ctx.imageSmoothingEnabled = false
      ctx.drawImage(o.edge, p.ox, p.oy, W * p.px, H * p.py)
    }
    ctx.restore()
  }

  drawCrosshair(ctx, p) {
    const [ix, iy] = this.imageOf(this.reader.cur)
    const x = p.ox + ix * p.px
    const y = p.oy + iy * p.py
    ctx.save()
    ctx.strokeStyle = 'rgba(80, 200, 255, 0.7)'
    ctx.lineWidth = 1
    ctx.beginPath()
    ctx.moveTo(x, p.oy)
    ctx.lineTo(x, p.oy + this.g.H * p.py)
    ctx.moveTo(p.ox, y)
    ctx.lineTo(p.ox + this.g.W * p.px, y)
    ctx.stroke()
    ctx.restore()
  }

  drawMeasure(ctx, p) {
    const m = this.reader.measure
    if (!m || m.plane !== this.plane.name || m.slice !== this.reader.cur[this.plane.axis]) return
    const a = [p.ox + m.a[0] * p.px, p.oy + m.a[1] * p.py]
    const b = [p.ox + m.b[0] * p.px, p.oy + m.b[1] * p.py]
    ctx.save()
    ctx.strokeStyle = '#ffd54a'
    ctx.fillStyle = '#ffd54a'
    ctx.lineWidth = 2
    ctx.beginPath()
    ctx.moveTo(a[0], a[1])
    ctx.lineTo(b[0], b[1])
    ctx.stroke()
    ctx.font = '13px sans-serif'
    ctx.fillText(m.text, b[0] + 6, b[1] - 6)
    ctx.restore()
  }
}
