"""Classification views of the shapes world: single-object images labelled by one attribute."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from PIL import Image

from .attributes import COLOUR_NAMES, SHAPES, ObjectSpec
from .captions import TASK_TEMPLATES, _task_classes
from .world import ShapesWorld


def label_of(task: str, obj: ObjectSpec) -> int:
    """Class index of an object under ``task``."""
    if task == "shape_colour":
        return SHAPES.index(obj.shape) * len(COLOUR_NAMES) + COLOUR_NAMES.index(obj.colour)
    labels, _ = _task_classes(task)
    return labels.index(getattr(obj, task))


class ShapesClassification:
    """Single-object images labelled by one attribute, for zero-shot and probes.

    ``world_or_params`` is a :class:`ShapesWorld` or a mapping of its fields.
    ``split``, ``size`` and ``shift`` override the world's (``shift=None`` keeps
    it). Items are ``(image, label_index)``; ``transform`` is applied to images.
    The ``sketch`` shift turns every object into an outline, so it is refused
    for the ``style`` task.
    """

    def __init__(
        self,
        world_or_params: ShapesWorld | Mapping[str, Any] | None = None,
        task: str = "shape",
        split: str | None = None,
        size: int | None = None,
        shift: str | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        base = world_or_params if isinstance(world_or_params, ShapesWorld) else ShapesWorld(**(world_or_params or {}))
        self.world = base.with_(
            split=split or base.split,
            size=base.size if size is None else size,
            shift=shift if shift is not None else base.shift,
            object_counts=(1.0,),
        )
        if task == "style" and self.world.shift == "sketch":
            raise ValueError("the sketch shift draws every object as an outline; the style label would change")
        self.task = task
        self.labels, self.classnames = _task_classes(task)
        self.templates: tuple[str, ...] = TASK_TEMPLATES[task]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.world)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        sample = self.world[index]
        image = self.transform(sample.image) if self.transform is not None else sample.image
        return image, label_of(self.task, sample.objects[0])

    def target(self, index: int) -> int:
        """Label of ``index`` without rendering the image."""
        return label_of(self.task, self.world.objects(index)[0][0])

    @property
    def targets(self) -> list[int]:
        """All labels (cheap: no rendering)."""
        return [self.target(i) for i in range(len(self))]

    def prompts(self, classname: str) -> list[str]:
        """The prompt templates filled with one class name."""
        return [t.format(classname) for t in self.templates]
