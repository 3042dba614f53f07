"""Dynamic 3D Gaussians as a second representation of featvid streams (issue 29).

model.py   the `Gaussians` type (one frame's Gaussians, raw 3DGS parameters)
ply.py     3DGS PLY files: read (checked, bounded) and write (atomic)
layout.py  the stream format's pieces: Morton orders, the atlas curve, planes, layout files (docs/gaussians.md)
generate.py  Gaussian sequences on the synthetic scenes' moving surfaces (`featvid synth-gaussians`)
"""
