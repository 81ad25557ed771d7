// The series in the browser: voxels fetched once over HTTP in chunks of slices (the chunk around the
// shown slice first), then every plane, window and readout is computed here, without the server.

export class Volume {
  constructor(meta, url) {
    this.meta = meta
    this.url = url
    const [n, rows, cols] = meta.shape
    this.dims = [cols, rows, n] // NIfTI voxel axes: 0 = col, 1 = row, 2 = display slice
    this.comps = meta.rgb ? 3 : 1
    this.strides = [this.comps, cols * this.comps, rows * cols * this.comps]
    const count = n * rows * cols * this.comps
    const Type = meta.dtype === 'int16' ? Int16Array : meta.dtype === 'uint8' ? Uint8Array : Float32Array
    this.data = new Type(count)
    this.loaded = new Uint8Array(meta.n_chunks)
    this.bytes = 0
    this.transferred = 0
    this.done = 0
    this.spacing = [0, 1, 2].map((j) => Math.hypot(meta.affine[0][j], meta.affine[1][j], meta.affine[2][j]) || 1)
  }

  sliceLoaded(s) {
    return this.loaded[Math.floor(s / this.meta.chunk_slices)] === 1
  }

  // Fetch every chunk, nearest to `first` (a display slice) first, a few at a time; onChunk after each.
  async load(first, onChunk, signal) {
    const m = this.meta
    const k0 = Math.min(m.n_chunks - 1, Math.max(0, Math.floor(first / m.chunk_slices)))
    const order = [k0]
    for (let d = 1; order.length < m.n_chunks; d++) {
      if (k0 + d < m.n_chunks) order.push(k0 + d)
      if (k0 - d >= 0) order.push(k0 - d)
    }
    const perSlice = this.strides[2]
    const next = async () => {
      while (order.length) {
        const k = order.shift()
        const res = await fetch(`${this.url}/${k}`, { signal })
        if (!res.ok) throw new Error(`chunk ${k}: HTTP ${res.status}`)
        const buf = await res.arrayBuffer()
        const timing = performance.getEntriesByName(res.url).pop()
        this.transferred += timing && timing.encodedBodySize ? timing.encodedBodySize : 0
        const Type = this.data.constructor
        this.data.set(new Type(buf), k * m.chunk_slices * perSlice)
        this.loaded[k] = 1
        this.bytes += buf.byteLength
        this.done += 1
        onChunk(k)
      }
    }
    await Promise.all([next(), next(), next()])
  }

  // Modality value (HU for CT) of voxel (c, r, s); an [r, g, b] triple for colour.
  value(c, r, s) {
    const i = c * this.strides[0] + r * this.strides[1] + s * this.strides[2]
    if (this.comps === 3) return [this.data[i], this.data[i + 1], this.data[i + 2]]
    return this.data[i] + this.meta.intercept
  }

  // Patient coordinates (DICOM LPS, mm) of a voxel: the affine gives RAS.
  lps(c, r, s) {
    const a = this.meta.affine
    const ras = [0, 1, 2].map((k) => a[k][0] * c + a[k][1] * r + a[k][2] * s + a[k][3])
    return [-ras[0], -ras[1], ras[2]]
  }
}

// One plane of the volume as shown: image size, the voxel of each screen pixel, pixel size in mm.
export function planeGeometry(vol, plane) {
  const d = vol.dims
  return {
    W: d[plane.h.axis],
    H: d[plane.v.axis],
    n: d[plane.axis],
    sx: vol.spacing[plane.h.axis],
    sy: vol.spacing[plane.v.axis],
  }
}

// Voxel index along an axis for a position counted in the plane's screen or slice order.
export function toVoxel(i, n, reverse) {
  return reverse ? n - 1 - i : i
}

// Display-ordered slice index (1-based on screen) of the voxel cursor in a plane.
export function sliceIndex(vol, plane, cur) {
  return toVoxel(cur[plane.axis], vol.dims[plane.axis], plane.reverse)
}

// Fill `out` (Uint32 RGBA, W x H) with the plane's slice through the cursor, through `lut`.
export function extract(vol, plane, cur, lut, out) {
  const { W, H } = planeGeometry(vol, plane)
  const st = vol.strides
  const base = cur[plane.axis] * st[plane.axis]
  const hs = plane.h.reverse ? -st[plane.h.axis] : st[plane.h.axis]
  const h0 = plane.h.reverse ? (W - 1) * st[plane.h.axis] : 0
  const data = vol.data
  for (let y = 0; y < H; y++) {
    let idx = base + toVoxel(y, H, plane.v.reverse) * st[plane.v.axis] + h0
    let o = y * W
    if (vol.comps === 3) {
      for (let x = 0; x < W; x++, idx += hs) out[o++] = lut.rgb(data[idx], data[idx + 1], data[idx + 2])
    } else if (lut.table) {
      const t = lut.table
      for (let x = 0; x < W; x++, idx += hs) out[o++] = t[data[idx] + 32768]
    } else {
      for (let x = 0; x < W; x++, idx += hs) out[o++] = lut.grey(data[idx])
    }
  }
}
