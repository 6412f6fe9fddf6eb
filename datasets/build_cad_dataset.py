"""Build the SH3D furniture point-cloud data set from Sweet Home 3D catalogs.

The Debian package ``sweethome3d-furniture`` ships 820 furniture models as OBJ
meshes inside five zip catalogs (``*.sh3f``). This script

1. reads each catalog's ``PluginFurnitureCatalog.properties`` (name, creator,
   model path, orientation and size of every model),
2. assigns a class to each model by its English name, with the rule table
   ``CLASS_RULES`` and the per-model list ``OVERRIDES`` below,
3. parses the OBJ mesh, orients it as Sweet Home 3D shows it, and converts it
   from Sweet Home 3D's Y-up frame to Z-up (as in ModelNet),
4. samples 2,048 surface points with face normals, area-weighted, with a seed
   derived from the shape name, then centres each cloud on its mean and scales
   it to the unit sphere,
5. makes a seeded, stratified 80/20 train/test split per class, and
6. writes ``sh3d_furniture.npz``, ``sh3d_furniture_ATTRIBUTION.csv`` and
   ``sh3d_furniture_ATTRIBUTION.md`` next to this script.

The output is byte-identical across runs on the same NumPy version.

Usage::

    apt-get download sweethome3d-furniture
    dpkg-deb -x sweethome3d-furniture_*_all.deb /tmp/sh3d
    python datasets/build_cad_dataset.py \\
        --furniture-dir /tmp/sh3d/usr/share/sweethome3d/furniture

Print the names each class rule matches, to review the rule table::

    python datasets/build_cad_dataset.py --list-candidates
"""

import argparse
import csv
import io
import os
import re
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_FURNITURE_DIR = "/usr/share/sweethome3d/furniture"
OUTPUT_STEM = "sh3d_furniture"
NUM_POINTS = 2048
SEED = 20240805
TEST_FRACTION = 0.2
MIN_SHAPES_PER_CLASS = 15
MIN_CLASSES = 8

# Fixed zip timestamp so that rebuilding gives byte-identical files. It is the
# earliest date the zip format can store.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)

GET_FURNITURE_HELP = (
    "Get the catalogs with:\n"
    "    apt-get download sweethome3d-furniture\n"
    "    dpkg-deb -x sweethome3d-furniture_*_all.deb /tmp/sh3d\n"
    "and pass --furniture-dir /tmp/sh3d/usr/share/sweethome3d/furniture "
    "(or install the package with apt-get install sweethome3d-furniture)."
)


@dataclass(frozen=True)
class CatalogLicense:
    """License of one catalog, checked against the catalog's LICENSE.TXT."""

    license: str
    url: str
    holder: str


# Licenses as stated in each catalog's LICENSE.TXT (sweethome3d-furniture 1.8-1).
# ``url`` must occur in that file, otherwise the build stops.
CATALOG_LICENSES: Dict[str, CatalogLicense] = {
    "BlendSwap-CC-0": CatalogLicense(
        "CC0-1.0",
        "http://creativecommons.org/choose/zero/",
        "the Blend Swap creators listed per model",
    ),
    "BlendSwap-CC-BY": CatalogLicense(
        "CC-BY-3.0",
        "http://creativecommons.org/licenses/by/3.0/",
        "the Blend Swap creators listed per model",
    ),
    "KatorLegaz": CatalogLicense(
        "CC-BY-3.0-US",
        "http://creativecommons.org/licenses/by/3.0/us/",
        "Andrew Kator & Jennifer Legaz",
    ),
    "Reallusion": CatalogLicense(
        "CC-BY-3.0-US",
        "http://creativecommons.org/licenses/by/3.0/us/",
        "Reallusion (http://www.reallusion.com/)",
    ),
    "Scopia": CatalogLicense(
        "CC-BY-3.0",
        "http://creativecommons.org/licenses/by/3.0/",
        "Emmanuel Puybaret / eTeks and Scopia Visual Interfaces Systems, s.l. "
        "(http://www.scopia.es)",
    ),
}


@dataclass(frozen=True)
class ClassRule:
    """Name rule of one class: a model belongs to the class when its name
    contains one of ``keywords`` and none of ``exclusions``. Both are phrases
    of whole lower-case words."""

    keywords: Tuple[str, ...]
    exclusions: Tuple[str, ...] = ()


# Classes in label order. Names follow ModelNet's class names where one exists.
CLASS_RULES: Dict[str, ClassRule] = {
    "bed": ClassRule(
        keywords=("bed", "crib", "futon"),
        # A futon couch is a sofa.
        exclusions=("futon couch",),
    ),
    "chair": ClassRule(
        keywords=("chair", "armchair"),
    ),
    "door": ClassRule(
        keywords=("door", "doors"),
        # Shower enclosures and cabinets with glass doors are not doors.
        exclusions=("shower door", "door cabinet"),
    ),
    "lamp": ClassRule(
        keywords=("lamp", "lamps", "light", "lights", "lamppost", "spotlight",
                  "lantern"),
        # A stone lantern is a garden ornament without a light source.
        exclusions=("stone lantern",),
    ),
    "person": ClassRule(
        keywords=("male", "female", "man", "woman", "boy", "girl", "mannequin"),
        exclusions=("woman shoes",),
    ),
    "plant": ClassRule(
        keywords=("plant", "tree", "flowers", "cactus", "orchids", "yucca",
                  "ficus", "bonsai", "bush", "palm", "pine", "bamboo", "acacia",
                  "cypress", "poplar", "maple", "beech", "blossom"),
        # Planter boxes are containers, closer to ModelNet's flower_pot.
        exclusions=("plant box", "flower box"),
    ),
    "sofa": ClassRule(
        keywords=("sofa", "couch"),
    ),
    "table": ClassRule(
        keywords=("table",),
        # Appliances, games and furniture that only carry "table" in the name.
        exclusions=("table lamp", "table fan", "football table", "pool table",
                    "table tennis", "changing table", "dressing table"),
    ),
}

# Per-model decisions after reading every candidate name that the rules match
# (run with --list-candidates). Keys are shape names, the model folder inside
# the catalog. A value of None drops the model.
OVERRIDES: Dict[str, Optional[str]] = {
    # An opened sofa bed has the shape of a bed, not of a sofa.
    "scopia/convertible-sofa-BZ-opened": "bed",
    # Named "Desk table" but modelled as a child's desk with a drawer unit.
    "scopia/kids_desk_table": None,
}


@dataclass(frozen=True)
class Model:
    """One furniture model of a catalog."""

    catalog: str
    shape: str
    name: str
    creator: str
    model_path: str
    rotation: Optional[Tuple[float, ...]]
    width: float
    depth: float
    height: float


# ---------------------------------------------------------------------------
# Catalog reading
# ---------------------------------------------------------------------------

_PROPERTIES_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_PROPERTIES_CONTROL = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape_properties(text: str) -> str:
    def replace(match: "re.Match[str]") -> str:
        code = match.group(1)
        if code.startswith("u") and len(code) == 5:
            return chr(int(code[1:], 16))
        return _PROPERTIES_CONTROL.get(code, code)

    return _PROPERTIES_ESCAPE.sub(replace, text)


def _split_properties_line(line: str) -> Tuple[str, str]:
    # The key ends at the first unescaped '=', ':' or whitespace.
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
            continue
        if char in "=: \t\f":
            break
        i += 1
    key = line[:i]
    rest = line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape_properties(key), _unescape_properties(rest)


def parse_properties(text: str) -> Dict[str, str]:
    """Parse a Java ``.properties`` file (comments, line continuations and
    ``\\uXXXX`` escapes) into a dictionary."""
    entries: Dict[str, str] = {}
    logical = ""
    for raw_line in text.splitlines():
        line = raw_line.lstrip(" \t\f")
        if not logical and (not line or line[0] in "#!"):
            continue

        # An odd number of trailing backslashes continues the line.
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            logical += line[:-1]
            continue

        logical += line
        key, value = _split_properties_line(logical)
        entries[key] = value
        logical = ""
    return entries


def _shape_name(model_path: str) -> str:
    # "/scopia/armchair1/armchair1.obj" -> "scopia/armchair1"
    return os.path.dirname(model_path.strip("/"))


def read_catalog(path: str) -> List[Model]:
    """Read the English model list of one ``.sh3f`` catalog and check its
    license text against :data:`CATALOG_LICENSES`."""
    catalog = os.path.splitext(os.path.basename(path))[0]
    if catalog not in CATALOG_LICENSES:
        raise ValueError(
            f"Unknown catalog '{catalog}' in {path}. Add its license to "
            f"CATALOG_LICENSES after reading its LICENSE.TXT."
        )

    with zipfile.ZipFile(path) as archive:
        license_text = archive.read("LICENSE.TXT").decode("latin-1")
        properties = parse_properties(
            archive.read("PluginFurnitureCatalog.properties").decode("latin-1")
        )

    expected_url = CATALOG_LICENSES[catalog].url
    if expected_url not in license_text:
        raise ValueError(
            f"LICENSE.TXT of {path} does not contain '{expected_url}'. Read the "
            f"license again and update CATALOG_LICENSES['{catalog}']."
        )

    models = []
    index = 1
    while f"id#{index}" in properties:
        rotation = properties.get(f"modelRotation#{index}")
        model_path = properties[f"model#{index}"]
        models.append(
            Model(
                catalog=catalog,
                shape=_shape_name(model_path),
                name=properties.get(f"name#{index}", ""),
                creator=properties.get(f"creator#{index}", ""),
                model_path=model_path.lstrip("/"),
                rotation=tuple(float(v) for v in rotation.split()) if rotation else None,
                width=float(properties[f"width#{index}"]),
                depth=float(properties[f"depth#{index}"]),
                height=float(properties[f"height#{index}"]),
            )
        )
        index += 1
    return models


# ---------------------------------------------------------------------------
# Classification by name
# ---------------------------------------------------------------------------


def _contains_phrase(words: Sequence[str], phrase: str) -> bool:
    target = phrase.split()
    width = len(target)
    return any(list(words[i:i + width]) == target for i in range(len(words) - width + 1))


def match_classes(name: str) -> Tuple[List[str], List[str]]:
    """Return the classes whose keywords match ``name`` and, of those, the
    classes whose exclusions also match."""
    words = re.findall(r"[a-z]+", name.lower())
    matched, excluded = [], []
    for label, rule in CLASS_RULES.items():
        if not any(_contains_phrase(words, k) for k in rule.keywords):
            continue
        matched.append(label)
        if any(_contains_phrase(words, e) for e in rule.exclusions):
            excluded.append(label)
    return matched, excluded


def classify(model: Model) -> Optional[str]:
    """Return the class of ``model``, or None when it belongs to no class.

    Raises:
        ValueError: If the rules assign two classes and no override decides.
    """
    if model.shape in OVERRIDES:
        return OVERRIDES[model.shape]

    matched, excluded = match_classes(model.name)
    accepted = [label for label in matched if label not in excluded]
    if len(accepted) > 1:
        raise ValueError(
            f"Model '{model.shape}' named '{model.name}' matches classes {accepted}. "
            f"Add an exclusion to CLASS_RULES or an entry to OVERRIDES."
        )
    return accepted[0] if accepted else None


def print_candidates(models: Sequence[Model]) -> None:
    """Print, per class, every model whose name matches a keyword, with the
    decision taken for it."""
    for label in CLASS_RULES:
        print(f"== {label}")
        for model in models:
            matched, excluded = match_classes(model.name)
            overridden = model.shape in OVERRIDES and OVERRIDES[model.shape] == label
            if label not in matched and not overridden:
                continue
            if model.shape in OVERRIDES:
                decision = f"override -> {OVERRIDES[model.shape]}"
            elif label in excluded:
                decision = "excluded"
            else:
                decision = "accepted"
            print(f"  {decision:20s} {model.shape:55s} {model.name}")


# ---------------------------------------------------------------------------
# Meshes
# ---------------------------------------------------------------------------


def parse_obj(text: str, source: str = "<obj>") -> Tuple[np.ndarray, np.ndarray]:
    """Parse the geometry of a Wavefront OBJ file.

    Reads ``v`` and ``f`` records of all objects and groups, accepts face
    vertices written as ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` with
    positive or negative (relative) indices, and splits polygons into a
    triangle fan. Materials, texture coordinates, normals, lines and points
    are ignored.

    Returns:
        ``(vertices, faces)``: ``[V, 3]`` float64 positions and ``[F, 3]``
        int64 zero-based vertex indices.

    Raises:
        ValueError: If a face refers to a vertex that does not exist.
    """
    vertices: List[Tuple[float, float, float]] = []
    faces: List[Tuple[int, int, int]] = []
    pending = ""
    for line_number, raw_line in enumerate(text.splitlines(), start=1):
        line = pending + raw_line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""

        fields = line.split()
        if not fields:
            continue
        if fields[0] == "v":
            vertices.append((float(fields[1]), float(fields[2]), float(fields[3])))
        elif fields[0] == "f":
            polygon = []
            for token in fields[1:]:
                index = int(token.split("/")[0])
                index = index - 1 if index > 0 else len(vertices) + index
                if not 0 <= index < len(vertices):
                    raise ValueError(
                        f"{source}, line {line_number}: face vertex '{token}' refers "
                        f"to a vertex that does not exist ({len(vertices)} defined so far)."
                    )
                polygon.append(index)
            # NOTE: a fan is only correct for convex polygons. Concave
            # n-gons (n > 4) get triangles outside their outline.
            for i in range(1, len(polygon) - 1):
                faces.append((polygon[0], polygon[i], polygon[i + 1]))

    vertex_array = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    face_array = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    return vertex_array, face_array


def orient_model(vertices: np.ndarray, model: Model) -> np.ndarray:
    """Apply the catalog's ``modelRotation`` and size, as Sweet Home 3D does,
    and convert from its Y-up frame to Z-up.

    Sweet Home 3D stretches each model so that its bounding box spans
    ``width`` along X, ``height`` along Y and ``depth`` along Z. Axes on which
    the mesh is flat keep their scale.
    """
    if model.rotation is not None:
        rotation = np.asarray(model.rotation, dtype=np.float64).reshape(3, 3)
        vertices = vertices @ rotation.T

    extent = vertices.max(axis=0) - vertices.min(axis=0)
    target = np.array([model.width, model.height, model.depth])
    flat = extent <= 1e-9 * max(float(extent.max()), 1e-300)
    scale = np.where(flat, 1.0, target / np.where(flat, 1.0, extent))
    vertices = vertices * scale

    # Y-up to Z-up: a rotation of +90 degrees about X, (x, y, z) -> (x, -z, y).
    return np.stack([vertices[:, 0], -vertices[:, 2], vertices[:, 1]], axis=1)


def sample_surface(
    vertices: np.ndarray,
    faces: np.ndarray,
    num_points: int,
    rng: np.random.Generator,
) -> Tuple[np.ndarray, np.ndarray]:
    """Sample points uniformly on a triangle mesh surface.

    Each point picks a triangle with probability proportional to its area,
    then a uniform position inside it. Its normal is the unit normal of that
    triangle, oriented by the vertex order (counter-clockwise seen from the
    outside gives an outward normal). Triangles with zero area are dropped.

    Returns:
        ``(points, normals)``: two ``[num_points, 3]`` float64 arrays.

    Raises:
        ValueError: If the mesh has no triangle with a positive area.
    """
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    cross = np.cross(b - a, c - a)
    double_area = np.linalg.norm(cross, axis=1)

    # Drop degenerate triangles, relative to the largest one.
    keep = double_area > 1e-12 * (double_area.max() if double_area.size else 0.0)
    if not keep.any():
        raise ValueError(
            f"The mesh has no triangle with a positive area ({len(faces)} faces)."
        )
    a, b, c = a[keep], b[keep], c[keep]
    # NOTE: meshes with inconsistent winding get some inward normals, because
    # nothing here re-orients faces.
    normals = cross[keep] / double_area[keep, None]

    # Area-weighted choice of triangles by inverting the cumulative area.
    cumulative = np.cumsum(double_area[keep])
    picks = np.searchsorted(cumulative, rng.random(num_points) * cumulative[-1], side="right")
    picks = np.minimum(picks, len(cumulative) - 1)

    # Uniform barycentric coordinates: sqrt of the first draw avoids
    # crowding points at vertex a.
    r1, r2 = rng.random(num_points), rng.random(num_points)
    s = np.sqrt(r1)[:, None]
    t = r2[:, None]
    points = (1.0 - s) * a[picks] + s * (1.0 - t) * b[picks] + s * t * c[picks]
    return points, normals[picks]


def normalize_to_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre ``points`` on their mean and scale the farthest one to norm 1."""
    centered = points - points.mean(axis=0)
    radius = float(np.linalg.norm(centered, axis=1).max())
    return centered / radius if radius > 0 else centered


def shape_rng(shape: str) -> np.random.Generator:
    """Return the random generator of one shape, seeded by its name so that a
    shape gets the same points whichever catalogs are built with it."""
    return np.random.default_rng([SEED, zlib.crc32(shape.encode("utf-8"))])


def sample_model(archive: zipfile.ZipFile, model: Model, num_points: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Read, orient, sample and normalize one model of an open catalog."""
    text = archive.read(model.model_path).decode("latin-1")
    vertices, faces = parse_obj(text, source=model.model_path)
    vertices = orient_model(vertices, model)
    points, normals = sample_surface(vertices, faces, num_points, shape_rng(model.shape))
    return normalize_to_unit_sphere(points), normals


# ---------------------------------------------------------------------------
# Split and output
# ---------------------------------------------------------------------------


def stratified_split(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Return ``"train"``/``"test"`` for every shape: in each class a seeded
    permutation sends ``round(TEST_FRACTION * n)`` shapes (at least one when
    the class has two or more) to the test split."""
    split = np.full(len(labels), "train", dtype="<U5")
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        num_test = int(round(TEST_FRACTION * len(members)))
        if len(members) >= 2:
            num_test = max(num_test, 1)
        order = np.random.default_rng([SEED, label]).permutation(len(members))
        split[members[order[:num_test]]] = "test"
    return split


def write_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` with fixed member order and
    timestamps, through a temporary file and an atomic rename."""
    temporary = path + ".tmp"
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9)
    os.replace(temporary, path)


def write_attribution(stem: str, models: Sequence[Model], labels: Sequence[str],
                      split: Sequence[str]) -> None:
    """Write the per-shape attribution CSV and the license notes in Markdown."""
    with open(stem + "_ATTRIBUTION.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["shape", "name", "class", "split", "creator", "catalog",
                         "license", "license_url"])
        for model, label, part in zip(models, labels, split):
            license_info = CATALOG_LICENSES[model.catalog]
            writer.writerow([model.shape, model.name, label, part, model.creator,
                             model.catalog, license_info.license, license_info.url])

    lines = [
        "# Attribution of the SH3D furniture point clouds",
        "",
        "Every point cloud in `sh3d_furniture.npz` is sampled from a 3D model of the",
        "Debian package `sweethome3d-furniture` (version 1.8), which repackages the",
        "Sweet Home 3D additional furniture catalogs. The sampled clouds are",
        "modified versions of those models: the meshes were oriented, resized to",
        "their catalog size, turned Z-up, sampled into points and normalized.",
        "",
        "`sh3d_furniture_ATTRIBUTION.csv` lists for every shape its model name,",
        "creator, catalog and license.",
        "",
        "| Catalog | License | Copyright holder | Shapes |",
        "| --- | --- | --- | --- |",
    ]
    for catalog, license_info in CATALOG_LICENSES.items():
        count = sum(model.catalog == catalog for model in models)
        if count:
            lines.append(f"| {catalog} | [{license_info.license}]({license_info.url}) "
                         f"| {license_info.holder} | {count} |")
    lines.append("")
    with open(stem + "_ATTRIBUTION.md", "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def find_catalogs(furniture_dir: str, names: Optional[Sequence[str]]) -> List[str]:
    """Return the catalog paths to build, sorted by name."""
    if not os.path.isdir(furniture_dir):
        raise FileNotFoundError(
            f"Furniture folder not found: {furniture_dir}.\n{GET_FURNITURE_HELP}"
        )
    available = sorted(f[:-len(".sh3f")] for f in os.listdir(furniture_dir) if f.endswith(".sh3f"))
    if not available:
        raise FileNotFoundError(
            f"No .sh3f catalogs found in {furniture_dir}.\n{GET_FURNITURE_HELP}"
        )
    selected = available if not names else list(names)
    missing = [name for name in selected if name not in available]
    if missing:
        raise ValueError(
            f"Catalogs {missing} not found in {furniture_dir}. Available: {available}."
        )
    return [os.path.join(furniture_dir, f"{name}.sh3f") for name in sorted(selected)]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--furniture-dir", default=DEFAULT_FURNITURE_DIR,
                        help="folder with the .sh3f catalogs (default: %(default)s)")
    parser.add_argument("--output-dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="folder for the .npz and attribution files "
                             "(default: the folder of this script)")
    parser.add_argument("--catalogs", nargs="+", default=None,
                        help="build only these catalogs, by file name without .sh3f; "
                             "skips the class-size check (default: all)")
    parser.add_argument("--num-points", type=int, default=NUM_POINTS,
                        help="points sampled per shape (default: %(default)s)")
    parser.add_argument("--list-candidates", action="store_true",
                        help="print the models each class rule matches and exit")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Dict[str, int]:
    """Build the data set and return the number of shapes per class."""
    catalogs = find_catalogs(args.furniture_dir, args.catalogs)
    all_models = [model for path in catalogs for model in read_catalog(path)]
    if args.list_candidates:
        print_candidates(all_models)
        return {}

    class_names = list(CLASS_RULES)
    selected = sorted(
        ((classify(model), model) for model in all_models if classify(model) is not None),
        key=lambda pair: (class_names.index(pair[0]), pair[1].shape),
    )
    labels = np.array([class_names.index(label) for label, _ in selected], dtype=np.uint8)
    models = [model for _, model in selected]

    counts = {label: int((labels == i).sum()) for i, label in enumerate(class_names)}
    if args.catalogs is None:
        large = [label for label, count in counts.items() if count >= MIN_SHAPES_PER_CLASS]
        if len(large) < MIN_CLASSES:
            raise ValueError(
                f"Only {len(large)} classes have {MIN_SHAPES_PER_CLASS} or more shapes "
                f"(counts: {counts}); {MIN_CLASSES} are needed. Review CLASS_RULES."
            )

    points = np.empty((len(models), args.num_points, 3), dtype=np.float16)
    normals = np.empty_like(points)
    archives = {path: zipfile.ZipFile(path) for path in catalogs}
    try:
        for i, model in enumerate(models):
            archive = archives[os.path.join(args.furniture_dir, f"{model.catalog}.sh3f")]
            shape_points, shape_normals = sample_model(archive, model, args.num_points)
            points[i] = shape_points.astype(np.float16)
            normals[i] = shape_normals.astype(np.float16)
    finally:
        for archive in archives.values():
            archive.close()

    split = stratified_split(labels, len(class_names))
    os.makedirs(args.output_dir, exist_ok=True)
    stem = os.path.join(args.output_dir, OUTPUT_STEM)
    write_npz(stem + ".npz", {
        "points": points,
        "normals": normals,
        "labels": labels,
        "classes": np.array(class_names),
        "shape_names": np.array([model.shape for model in models]),
        "split": split,
    })
    write_attribution(stem, models, [class_names[i] for i in labels], split)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        counts = build(args)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if counts:
        total = sum(counts.values())
        print(f"Wrote {total} shapes to {os.path.join(args.output_dir, OUTPUT_STEM)}.npz "
              f"in {time.perf_counter() - start:.1f} s")
        for label, count in counts.items():
            print(f"  {label:8s} {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
