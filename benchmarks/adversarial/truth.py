"""Ground truth for the adversarial suite, computed from the raw masks and NIfTI affines.

Nothing here imports the project's geometry, cue, margin or verification code: targets are this
module's own connected components of the raw masks (Kvasir-SEG JPEG masks, HC18 annotations,
BraTS label maps reoriented with nibabel), and every rule of the shared viewer rules
(``VIEWER_RULES.md`` v1: positions P1-P6, comparisons S1-S6, sizes Z1-Z3, anatomy A1-A3) is
implemented again below. The built folder is read only to learn the ids of the targets (matched by
mask identity) and which slices a build rendered.

Every rule answers ``True`` (holds), ``False`` (fails) or ``None``: too close to a threshold to
call (within ``EPS_PX`` pixels, or ``EPS_RATIO`` of a ratio), so a half-pixel difference in how a
centroid is measured can never flip a claim. Claims whose truth is ``None`` are left out.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage
from scipy.spatial import ConvexHull

Tri = bool | None
EPS_PX = 1.5  # pixel margin around every position threshold
EPS_RATIO = 0.02  # relative margin around every ratio threshold (areas, shares, fractions)
EIGHT = np.ones((3, 3), dtype=bool)


# ---- three-valued logic -----------------------------------------------------------------------
def above(value: float, threshold: float, eps: float) -> Tri:
    """``value >= threshold`` with a dead band of ``eps`` around the threshold."""
    if value > threshold + eps:
        return True
    if value < threshold - eps:
        return False
    return None


def below(value: float, threshold: float, eps: float) -> Tri:
    return above(-value, -threshold, eps)


def all_of(values: Iterable[Tri]) -> Tri:
    values = list(values)
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def any_of(values: Iterable[Tri]) -> Tri:
    values = list(values)
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def negate(value: Tri) -> Tri:
    return None if value is None else not value


# ---- targets and images -----------------------------------------------------------------------
@dataclass(eq=False)
class Region:
    """One target: this module's own component of the raw mask, in display pixels."""

    label: str
    mask: np.ndarray
    rid: str = ""  # the built record id, once matched
    side_offset_mm: float | None = None  # patient x of the centroid minus the midline (RAS+)
    side_share_right: float | None = None  # share of pixels on the patient's right of it

    def __post_init__(self) -> None:
        rows, cols = np.nonzero(self.mask)
        self.area = int(rows.size)
        self.x0, self.x1 = int(cols.min()), int(cols.max()) + 1
        self.y0, self.y1 = int(rows.min()), int(rows.max()) + 1
        self.cx, self.cy = float(cols.mean()), float(rows.mean())
        cov = np.cov(np.stack([cols, rows]).astype(float)) if rows.size > 2 else np.eye(2)
        low, high = np.sort(np.linalg.eigvalsh(cov))
        self.axis_ratio = math.sqrt(max(low, 0.0) / high) if high > 0 else 1.0
        self.solidity = _solidity(self.mask, self.area)


def _solidity(mask: np.ndarray, area: int) -> float:
    """Area over the area of the convex hull of the pixels' corners."""
    edge = mask & ~ndimage.binary_erosion(mask)
    rows, cols = np.nonzero(edge)
    corners = np.concatenate(
        [np.stack([cols + dx, rows + dy], axis=1) for dx in (0, 1) for dy in (0, 1)]
    )
    try:
        return min(1.0, area / ConvexHull(corners).volume)
    except Exception:  # degenerate (a line of pixels)
        return 1.0


@dataclass
class Scene:
    """One image of a build with its targets."""

    source: str
    image_id: str
    kind: str  # endoscopy | ultrasound | mri
    width: int
    height: int
    regions: list[Region]
    spacing_mm: tuple[float, float] | None = None
    fragments: Counter = field(default_factory=Counter)  # label -> components below min size
    brain_rows: tuple[int, int] | None = None  # antero-posterior extent of the brain, rows
    sequence: str | None = None  # the MRI sequence rendered (BraTS: flair or t1c)

    @property
    def wording(self) -> str:
        """Which anchor and modality wording fits the image: its kind, and for MRI its sequence."""
        return f"{self.kind}_{self.sequence}" if self.sequence else self.kind

    def candidates(self, region: Region) -> list[Region]:
        return [r for r in self.regions if r.label == region.label]

    def others(self, region: Region) -> list[Region]:
        return [r for r in self.regions if r.label == region.label and r is not region]


def components(mask: np.ndarray, min_size: int) -> tuple[list[np.ndarray], int]:
    """8-connected components of at least ``min_size`` pixels, and how many were smaller."""
    labelled, n = ndimage.label(mask, structure=EIGHT)
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)
    kept = [labelled == i for i in range(1, n + 1) if sizes[i] >= min_size]
    return kept, int(sum(1 for i in range(1, n + 1) if sizes[i] < min_size))


# ---- reading the raw corpora ------------------------------------------------------------------
KVASIR_MIN, HC18_MIN, BRATS_MIN = 32, 256, 16
BRATS_LABELS = {1: "necrosis", 2: "edema", 3: "non_enhancing_tumour", 4: "enhancing_tumour"}
BRATS_SINGLE = {"edema"}
# The default BraTS build renders each label on the sequence that shows it.
BRATS_SHOWN = {"flair": {"edema"}, "t1c": {"necrosis", "non_enhancing_tumour", "enhancing_tumour"}}


def kvasir_scene(data: Path, case: str) -> Scene:
    grey = np.asarray(Image.open(data / "masks" / f"{case}.jpg").convert("L"))
    masks, small = components(grey >= 128, KVASIR_MIN)
    h, w = grey.shape
    regions = [Region("polyp", m) for m in masks]
    return Scene(
        "kvasir_seg", f"kvasir_seg/{case}", "endoscopy", w, h, regions, None, Counter(polyp=small)
    )


def hc18_scene(data: Path, stem: str, spacing: dict[str, float]) -> Scene:
    rgb = np.asarray(Image.open(data / "training_set" / f"{stem}_Annotation.png").convert("L"))
    filled = ndimage.binary_fill_holes(rgb > 0)
    h, w = filled.shape
    mm = spacing[f"{stem}.png"]
    return Scene(
        "hc18", f"hc18/{stem}", "ultrasound", w, h, [Region("fetal_head", filled)], (mm, mm)
    )


def hc18_spacing(data: Path) -> dict[str, float]:
    with open(data / "training_set_pixel_size_and_HC.csv", newline="", encoding="utf-8") as fh:
        return {row["filename"]: float(row["pixel size(mm)"]) for row in csv.DictReader(fh)}


@dataclass
class BratsCase:
    """One case in RAS+ voxel order (nibabel's closest canonical), with its brain midline."""

    labels: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    midline_x: float

    @classmethod
    def load(cls, folder: Path) -> BratsCase:
        def canonical(pattern: str) -> tuple[np.ndarray, np.ndarray]:
            (path,) = [p for p in folder.iterdir() if pattern in p.name.lower()]
            img = nib.as_closest_canonical(nib.load(str(path)))
            assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
            return np.asanyarray(img.dataobj), img.affine

        labels, affine = canonical("otmulticlass")
        brain, brain_affine = canonical("brainmask")
        assert np.allclose(affine, brain_affine)
        brain = brain > 0.5
        centre = np.array([idx.mean() for idx in np.nonzero(brain)] + [1.0])
        return cls(np.rint(labels).astype(np.int16), brain, affine, float((affine @ centre)[0]))

    def display(self, volume: np.ndarray, k: int) -> np.ndarray:
        """Axial slice ``k`` in the radiological display: row 0 is the most anterior row of
        voxels, column 0 the voxels farthest to the patient's right."""
        return volume[::-1, ::-1, k].T

    def world_x(self, rows: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
        """Patient x (RAS+: towards the patient's right) of display pixels of slice ``k``."""
        nx, ny = self.labels.shape[:2]
        i, j = nx - 1 - cols, ny - 1 - rows
        return (
            self.affine[0, 0] * i
            + self.affine[0, 1] * j
            + self.affine[0, 2] * k
            + self.affine[0, 3]
        )

    def check_display(self, k: int) -> None:
        """Anterior is up and the patient's right is on the image's left (from the affine)."""
        nx, ny = self.labels.shape[:2]
        top, bottom = self.affine @ [nx // 2, ny - 1, k, 1], self.affine @ [nx // 2, 0, k, 1]
        assert top[1] > bottom[1], "row 0 must be anterior"
        xs = self.world_x(np.array([0, 0]), np.array([0, nx - 1]), k)
        assert xs[0] > xs[1], "column 0 must be the patient's right"


def brats_scene(case: BratsCase, case_id: str, k: int, sequence: str = "flair") -> Scene:
    case.check_display(k)
    labels = case.display(case.labels, k)
    brain = case.display(case.brain, k)
    h, w = labels.shape
    regions: list[Region] = []
    small: Counter = Counter()
    for value, name in BRATS_LABELS.items():
        mask = labels == value
        if name not in BRATS_SHOWN[sequence] or not mask.any():
            continue
        if name in BRATS_SINGLE:
            if mask.sum() >= BRATS_MIN:
                regions.append(Region(name, mask))
            else:
                small[name] += 1
            continue
        masks, dropped = components(mask, BRATS_MIN)
        regions += [Region(name, m) for m in masks]
        small[name] += dropped
    for region in regions:
        rows, cols = np.nonzero(region.mask)
        offsets = case.world_x(rows, cols, k) - case.midline_x
        region.side_offset_mm = float(offsets.mean())
        region.side_share_right = float((offsets > 0).mean())
    brain_rows = np.flatnonzero(brain.any(axis=1))
    extent = (int(brain_rows[0]), int(brain_rows[-1]) + 1) if brain_rows.size else None
    return Scene(
        "brats2013",
        f"brats2013/{case_id}/axial-{k:03d}/{sequence}",
        "mri",
        w,
        h,
        regions,
        (1.0, 1.0),
        small,
        extent,
        sequence,
    )


# ---- matching to the built records ------------------------------------------------------------
Built = list[tuple[str, str, np.ndarray]]  # the records of one image: id, label, mask


def built_images(folder: Path) -> dict[str, Built]:
    """Image id -> its records, read with pyarrow from the grounding and rejected shards."""
    out: dict[str, Built] = defaultdict(list)
    seen: set[str] = set()
    for config in ("grounding", "rejected"):
        for path in sorted((folder / config).glob("*.parquet")):
            for row in pq.read_table(path, columns=["id", "image_id", "label", "mask"]).to_pylist():
                if row["id"] in seen:  # a target's grounding row and its rejected query rows
                    continue
                seen.add(row["id"])
                rle = {"size": row["mask"]["size"], "counts": row["mask"]["counts"].encode()}
                mask = mask_utils.decode(rle).astype(bool)
                out[row["image_id"]].append((row["id"], row["label"], mask))
    return dict(out)


def match(scene: Scene, built: Built) -> str | None:
    """Give each region its record id: masks must be identical, one to one. Returns why the
    image cannot be used, or None."""
    if len(built) != len(scene.regions):
        return f"{len(scene.regions)} own components, {len(built)} built records"
    free = list(scene.regions)
    for rid, label, mask in built:
        same = [r for r in free if r.label == label and np.array_equal(r.mask, mask)]
        if len(same) != 1:
            return f"{rid}: no identical own component"
        same[0].rid = rid
        free.remove(same[0])
    return None


def load_scenes(data: Path, built: dict[str, Path]) -> tuple[list[Scene], list[str]]:
    """Scenes of every built image of the three samples, matched to their record ids, and the
    images left out (with why)."""
    scenes: list[Scene] = []
    skipped: list[str] = []

    def add(scene: Scene, images: dict[str, Built]) -> None:
        why = match(scene, images[scene.image_id])
        if why:
            skipped.append(f"{scene.image_id}: {why}")
        else:
            scenes.append(scene)

    images = built_images(built["kvasir_seg"])
    for image_id in sorted(images):
        add(kvasir_scene(data / "kvasir_seg", image_id.split("/", 1)[1]), images)
    images = built_images(built["hc18"])
    spacing = hc18_spacing(data / "hc18")
    for image_id in sorted(images):
        add(hc18_scene(data / "hc18", image_id.split("/", 1)[1], spacing), images)
    images = built_images(built["brats2013"])
    cases: dict[str, BratsCase] = {}
    for image_id in sorted(images):
        _, case_id, view, sequence = image_id.split("/")
        axis, index = view.split("-")
        assert axis == "axial", image_id
        if case_id not in cases:
            cases[case_id] = BratsCase.load(data / "brats2013" / case_id)
        add(brats_scene(cases[case_id], case_id, int(index), sequence), images)
    return scenes, skipped


# ---- the viewer rules -------------------------------------------------------------------------
Rule = Callable[[Region, Scene], Tri]


def half(side: str) -> Rule:
    """P1: left/right/upper/lower half of the image."""

    def rule(r: Region, s: Scene) -> Tri:
        w, h = s.width, s.height
        if side == "left":
            return all_of([below(r.cx, 0.40 * w, EPS_PX), below(r.x1, 0.65 * w, EPS_PX)])
        if side == "right":
            return all_of([above(r.cx, 0.60 * w, EPS_PX), above(r.x0, 0.35 * w, EPS_PX)])
        if side == "upper":
            return all_of([below(r.cy, 0.40 * h, EPS_PX), below(r.y1, 0.65 * h, EPS_PX)])
        return all_of([above(r.cy, 0.60 * h, EPS_PX), above(r.y0, 0.35 * h, EPS_PX)])

    return rule


OPPOSITE = {"left": "right", "right": "left", "upper": "lower", "lower": "upper"}


def quadrant(level: str, side: str) -> Rule:
    """P2: both halves."""
    return lambda r, s: all_of([half(level)(r, s), half(side)(r, s)])


def corner(level: str, side: str) -> Rule:
    """P3: centroid in the outer third on both axes, box inside that quadrant."""

    def rule(r: Region, s: Scene) -> Tri:
        w, h = s.width, s.height
        x = (
            [below(r.cx, w / 3, EPS_PX), below(r.x1, w / 2, EPS_PX)]
            if side == "left"
            else [above(r.cx, 2 * w / 3, EPS_PX), above(r.x0, w / 2, EPS_PX)]
        )
        y = (
            [below(r.cy, h / 3, EPS_PX), below(r.y1, h / 2, EPS_PX)]
            if level == "upper"
            else [above(r.cy, 2 * h / 3, EPS_PX), above(r.y0, h / 2, EPS_PX)]
        )
        return all_of(x + y)

    return rule


def central(r: Region, s: Scene) -> Tri:
    """P4: the box straddles both midlines and the centroid is within 15 % of the centre."""
    w, h = s.width, s.height
    return all_of(
        [
            below(r.x0, w / 2, EPS_PX),
            above(r.x1, w / 2, EPS_PX),
            below(r.y0, h / 2, EPS_PX),
            above(r.y1, h / 2, EPS_PX),
            below(abs(r.cx - w / 2), 0.15 * w, EPS_PX),
            below(abs(r.cy - h / 2), 0.15 * h, EPS_PX),
        ]
    )


def near_edge(edge: str) -> Rule:
    """P5, a named edge: the box within 5 % of it, the centroid in the outer third."""

    def rule(r: Region, s: Scene) -> Tri:
        w, h = s.width, s.height
        if edge == "left":
            return all_of([below(r.x0, 0.05 * w, EPS_PX), below(r.cx, w / 3, EPS_PX)])
        if edge == "right":
            return all_of([above(r.x1, 0.95 * w, EPS_PX), above(r.cx, 2 * w / 3, EPS_PX)])
        if edge == "top":
            return all_of([below(r.y0, 0.05 * h, EPS_PX), below(r.cy, h / 3, EPS_PX)])
        return all_of([above(r.y1, 0.95 * h, EPS_PX), above(r.cy, 2 * h / 3, EPS_PX)])

    return rule


def periphery(r: Region, s: Scene) -> Tri:
    """P5, unnamed: some edge."""
    return any_of(near_edge(e)(r, s) for e in ("left", "right", "top", "bottom"))


def clock(hour: int) -> Rule:
    """P6 (endoscopy only): the centroid's angle about the centre, 12 up, clockwise, within one
    hour of ``hour``, at least 15 % of the shorter side from the centre."""

    def rule(r: Region, s: Scene) -> Tri:
        if s.kind != "endoscopy":
            return False
        dx, dy = r.cx - s.width / 2, r.cy - s.height / 2
        radius = math.hypot(dx, dy)
        angle = (math.degrees(math.atan2(dx, -dy)) / 30) % 12
        distance = abs(angle - hour % 12)
        distance = min(distance, 12 - distance)
        eps_hour = math.degrees(EPS_PX / max(radius, 1.0)) / 30
        return all_of(
            [
                above(radius, 0.15 * min(s.width, s.height), EPS_PX),
                below(distance, 1.0, eps_hour),
            ]
        )

    return rule


def clock_hour(r: Region, s: Scene) -> float:
    dx, dy = r.cx - s.width / 2, r.cy - s.height / 2
    return (math.degrees(math.atan2(dx, -dy)) / 30) % 12


def beyond(t: Region, o: Region, s: Scene, direction: str) -> Tri:
    """S1: ``t`` is to the left of / right of / above / below ``o``."""
    w, h = s.width, s.height
    exact = 0.25  # box edges are integers of identical masks: equal counts as not beyond
    if direction == "left":
        parts = [below(t.cx, o.cx - 0.05 * w, EPS_PX), below(t.x0, o.x0 + 0.5, exact)]
        parts.append(below(t.x1, o.x1 + 0.5, exact))
    elif direction == "right":
        parts = [above(t.cx, o.cx + 0.05 * w, EPS_PX), above(t.x0, o.x0 - 0.5, exact)]
        parts.append(above(t.x1, o.x1 - 0.5, exact))
    elif direction == "up":
        parts = [below(t.cy, o.cy - 0.05 * h, EPS_PX), below(t.y0, o.y0 + 0.5, exact)]
        parts.append(below(t.y1, o.y1 + 0.5, exact))
    else:
        parts = [above(t.cy, o.cy + 0.05 * h, EPS_PX), above(t.y0, o.y0 - 0.5, exact)]
        parts.append(above(t.y1, o.y1 - 0.5, exact))
    return all_of(parts)


def extremal(direction: str) -> Rule:
    """S2: beyond every other candidate; false when there is none."""

    def rule(r: Region, s: Scene) -> Tri:
        others = s.others(r)
        return all_of(beyond(r, o, s, direction) for o in others) if others else False

    return rule


def _log_ratio(a: float, b: float) -> float:
    return math.log(a / b)


def larger(t: Region, o: Region) -> Tri:
    """S3: ``t`` is clearly larger than ``o`` (area at least 1.25 times)."""
    return above(_log_ratio(t.area, o.area), math.log(1.25), EPS_RATIO)


def largest(r: Region, s: Scene) -> Tri:
    others = s.others(r)
    return all_of(larger(r, o) for o in others) if others else None


def smallest(r: Region, s: Scene) -> Tri:
    others = s.others(r)
    return all_of(larger(o, r) for o in others) if others else None


def size_rank(rank: int, from_largest: bool) -> Rule:
    """S3 ordinals: the target is number ``rank`` by size and every neighbouring pair up to it
    (and the pair just after it) is clear. Clearly another rank when it is clearly the largest
    or clearly the smallest, or there are fewer candidates."""

    def rule(r: Region, s: Scene) -> Tri:
        cands = sorted(s.candidates(r), key=lambda c: c.area, reverse=from_largest)
        if len(cands) < rank:
            return False
        first, last = (largest, smallest) if from_largest else (smallest, largest)
        if rank > 1 and first(r, s):
            return False
        if rank < len(cands) and last(r, s):
            return False
        step = larger if from_largest else (lambda a, b: larger(b, a))
        pairs = [step(cands[i], cands[i + 1]) for i in range(min(rank, len(cands) - 1))]
        if cands.index(r) == rank - 1 and all_of(pairs) is True:
            return True
        return None

    return rule


def _centre_distance(r: Region, s: Scene) -> float:
    return math.hypot(r.cx - s.width / 2, r.cy - s.height / 2)


def nearer_centre(r: Region, s: Scene) -> Tri:
    """S4: nearer the centre than every other candidate by 5 % of the diagonal."""
    others = s.others(r)
    if not others:
        return None
    gap = 0.05 * math.hypot(s.width, s.height)
    d = _centre_distance(r, s)
    return all_of(below(d, _centre_distance(o, s) - gap, EPS_PX) for o in others)


def nearer_edge(r: Region, s: Scene) -> Tri:
    others = s.others(r)
    if not others:
        return None
    gap = 0.05 * math.hypot(s.width, s.height)
    d = _centre_distance(r, s)
    return all_of(above(d, _centre_distance(o, s) + gap, EPS_PX) for o in others)


def gap_px(a: Region, b: Region) -> float:
    """Smallest Euclidean distance between the pixel centres of two masks."""
    return float(ndimage.distance_transform_edt(~b.mask)[a.mask].min())


def enclosed(a: Region, b: Region) -> float:
    """Share of ``a``'s pixels inside ``b`` with its holes filled."""
    return float(ndimage.binary_fill_holes(b.mask)[a.mask].mean())


def adjacent(a: Region, b: Region) -> Tri:
    """S5: masks within 2 px (touching); clearly apart beyond 4 px. One lying within the other
    (a necrotic core inside its enhancing rim) is "inside" rather than "next to" it: unclear."""
    if max(enclosed(a, b), enclosed(b, a)) >= 0.5:
        return None
    d = gap_px(a, b)
    return True if d <= 2.0 else False if d > 4.0 else None


def count(test: Callable[[int], bool]) -> Rule:
    """S6: the number of candidates; unknowable when fragments below the minimum size exist."""

    def rule(r: Region, s: Scene) -> Tri:
        if s.fragments[r.label]:
            return None
        return test(len(s.candidates(r)))

    return rule


def image_share(op: str, share: float) -> Rule:
    """Z2: the target's share of the image area at least (``>=``) or at most (``<=``) ``share``."""

    def rule(r: Region, s: Scene) -> Tri:
        value = math.log(r.area / (s.width * s.height))
        return (above if op == ">=" else below)(value, math.log(share), EPS_RATIO * 2)

    return rule


def patient_side(side: str) -> Rule:
    """A1 (volumes): clearly on that side of the brain's midline (10 mm, 85 % of the pixels);
    clearly not when within 3 mm of the midline or on the other side. 2D: unverifiable."""

    def rule(r: Region, s: Scene) -> Tri:
        if r.side_offset_mm is None:
            return False
        sign = 1 if side == "right" else -1
        offset = sign * r.side_offset_mm
        share = r.side_share_right if side == "right" else 1 - r.side_share_right
        if offset >= 10 and share >= 0.85:
            return True
        if offset <= 3:
            return False
        return None

    return rule


def lobe(name: str) -> Rule:
    """A3: frontal / occipital from the centroid's place along the brain's antero-posterior
    extent on the slice; any other region is unverifiable without an atlas."""

    def rule(r: Region, s: Scene) -> Tri:
        if s.brain_rows is None or name not in ("frontal", "occipital"):
            return False
        top, bottom = s.brain_rows
        f = (r.cy - top) / (bottom - top)
        eps = EPS_PX / (bottom - top)
        return below(f, 0.35, eps) if name == "frontal" else above(f, 0.80, eps)

    return rule


def lobe_fraction(r: Region, s: Scene) -> float | None:
    if s.brain_rows is None:
        return None
    top, bottom = s.brain_rows
    return (r.cy - top) / (bottom - top)


# Shapes have no shared rule: these are deliberately wide margins, so only shapes every viewer
# would name the same way are claimed (axis ratio = minor/major of the second moments,
# solidity = area over the convex hull).
def shape(name: str) -> Rule:
    def rule(r: Region, s: Scene) -> Tri:
        q, sol = r.axis_ratio, r.solidity
        if name == "round":
            if q >= 0.90 and sol >= 0.93:
                return True
            return False if q <= 0.55 or sol <= 0.75 else None
        if name == "oval":
            if 0.55 <= q <= 0.85 and sol >= 0.93:
                return True
            return False if q <= 0.35 or sol <= 0.75 else None
        if name == "elongated":
            if q <= 0.40 and sol >= 0.80:
                return True
            return False if q >= 0.70 else None
        if name == "irregular":
            if sol <= 0.70:
                return True
            return False if sol >= 0.95 and q >= 0.5 else None
        if name == "crescent":
            return False if sol >= 0.90 else None
        raise ValueError(name)

    return rule


def never(r: Region, s: Scene) -> Tri:
    """A claim nothing in the image can support (unverifiable, wrong organ, needs a judge)."""
    return False
