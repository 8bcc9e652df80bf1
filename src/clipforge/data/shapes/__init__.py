"""The shapes world: a deterministic, download-free source of image-caption pairs (and masks).

Every sample is a pure function of ``(seed, split, index)``: a per-index numpy
``Generator`` is seeded from those numbers, so any index can be generated in O(1),
in any order, in any worker process. Images show 1-3 coloured shapes; captions
describe them with varied templates, synonyms, spatial relations and counts. A
seed-determined set of (shape, colour) pairs never occurs in the training split
(``test_compositional``), and in the richer varieties a seed-determined set of
(renderer, background) styles never does either (``test_style``), which makes
compositional and stylistic generalisation measurable. Every sample also carries
per-pixel class and instance masks.

The package's modules: :mod:`.attributes` (attributes, records, geometry),
:mod:`.captions` (the caption language), :mod:`.render` (classic rendering),
:mod:`.styles` (varieties: renderers, backgrounds, finishing), :mod:`.world`
(``ShapesWorld``), :mod:`.views` (classification views), :mod:`.writers`
(CSV, webdataset and mask folders) and :mod:`.anomaly` (MVTec-style anomaly
parts). Every public name is importable from here.
See ``docs/shapes.md`` for an overview.
"""

from __future__ import annotations

from .anomaly import (
    ANOMALY_CATEGORIES,
    ANOMALY_PARTS,
    DEFECTS,
    VISIBLE_CHANGE,
    AnomalyPart,
    AnomalySample,
    anomaly_sample,
    write_anomaly_dataset,
)
from .attributes import (
    BACKGROUNDS,
    COLOUR_JITTER,
    COLOUR_NAMES,
    COLOURS,
    DUPLICATE_PROBABILITY,
    FILLED_PROBABILITY,
    MASK_CLASSES,
    OUTLINE_RATIO,
    OUTLINE_WIDTH,
    POSITIONS,
    SHAPE_POLYGONS,
    SHAPES,
    SHIFT_BACKGROUNDS,
    SHIFTS,
    SIZE_RADIUS,
    SIZES,
    SPLITS,
    STYLES,
    TASKS,
    ObjectSpec,
    Sample,
    choose_heldout,
    instance_ids,
    relation_between,
)
from .captions import (
    COLOUR_WORDS,
    COUNT_TEMPLATES,
    LIST_TEMPLATES,
    NUMBER_WORDS,
    PLURALS,
    POSITION_PHRASES,
    POSITION_SUFFIXES,
    PUNCTUATION,
    RELATION_PHRASES,
    RELATION_TEMPLATES,
    SHAPE_WORDS,
    SINGLE_POSITION_TEMPLATES,
    SINGLE_TEMPLATES,
    SIZE_WORDS,
    STYLE_WORDS,
    SYNONYM_PROBABILITY,
    TASK_TEMPLATES,
    make_caption,
    vocabulary,
)
from .render import render_background, render_mask
from .styles import (
    ASPECT_LIMIT,
    RENDERERS,
    RICH_BACKGROUNDS,
    ROTATION_LIMIT,
    VARIETIES,
    Variety,
    draw_object,
    resolve_variety,
    rich_background,
)
from .views import ShapesClassification, label_of
from .world import ShapesWorld
from .writers import CSV_COLUMNS, write_csv_dataset, write_mask_dataset, write_webdataset

__all__ = [
    "ANOMALY_CATEGORIES",
    "ANOMALY_PARTS",
    "ASPECT_LIMIT",
    "BACKGROUNDS",
    "COLOURS",
    "COLOUR_JITTER",
    "COLOUR_NAMES",
    "COLOUR_WORDS",
    "COUNT_TEMPLATES",
    "CSV_COLUMNS",
    "DEFECTS",
    "DUPLICATE_PROBABILITY",
    "FILLED_PROBABILITY",
    "LIST_TEMPLATES",
    "MASK_CLASSES",
    "NUMBER_WORDS",
    "OUTLINE_RATIO",
    "OUTLINE_WIDTH",
    "PLURALS",
    "POSITIONS",
    "POSITION_PHRASES",
    "POSITION_SUFFIXES",
    "PUNCTUATION",
    "RELATION_PHRASES",
    "RELATION_TEMPLATES",
    "RENDERERS",
    "RICH_BACKGROUNDS",
    "ROTATION_LIMIT",
    "SHAPES",
    "SHAPE_POLYGONS",
    "SHAPE_WORDS",
    "SHIFTS",
    "SHIFT_BACKGROUNDS",
    "SINGLE_POSITION_TEMPLATES",
    "SINGLE_TEMPLATES",
    "SIZES",
    "SIZE_RADIUS",
    "SIZE_WORDS",
    "SPLITS",
    "STYLES",
    "STYLE_WORDS",
    "SYNONYM_PROBABILITY",
    "TASKS",
    "TASK_TEMPLATES",
    "VARIETIES",
    "VISIBLE_CHANGE",
    "AnomalyPart",
    "AnomalySample",
    "ObjectSpec",
    "Sample",
    "ShapesClassification",
    "ShapesWorld",
    "Variety",
    "anomaly_sample",
    "choose_heldout",
    "draw_object",
    "instance_ids",
    "label_of",
    "make_caption",
    "relation_between",
    "render_background",
    "render_mask",
    "resolve_variety",
    "rich_background",
    "vocabulary",
    "write_anomaly_dataset",
    "write_csv_dataset",
    "write_mask_dataset",
    "write_webdataset",
]
