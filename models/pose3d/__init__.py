"""3-D human pose data and metrics for video lifting models (MixSTE, HoT).

* :mod:`.skeleton`: the Human3.6M 17-joint skeleton (parents, left/right sets, flips);
* :mod:`.metrics`: MPJPE, P-MPJPE and per-action averaging;
* :mod:`.camera`: the distorted pinhole camera of Human3.6M/VideoPose3D;
* :mod:`.h36m`: loading VideoPose3D-format npz files into sequences and clips;
* :mod:`.synthetic`: a synthetic motion data set in the same format.
"""
