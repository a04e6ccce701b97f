"""The shape shared by the dynamic providers that only read (a check of the host, a wait).

Such a resource owns no infrastructure: it compares a fixed tuple of inputs, and ``create`` and
``update`` both rebuild the typed inputs from the engine's raw dict, run the reading, and return
the inputs merged with what was found (full outputs each time). ``delete`` does nothing. A
subclass supplies the inputs it compares, how to parse them, what to run and the resource's
deterministic id; ``check`` stays with the subclass.

The class lives in an importable module of the installed package, so the engine's serialized
``__provider`` refers to it by name and loads in a clean process, like its subclasses.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult


class ReadOnlyProps(Protocol):
    """Typed inputs of a read-only resource: what its outputs repeat of them."""

    def to_outputs(self) -> dict[str, Any]: ...


P = TypeVar("P", bound=ReadOnlyProps)


class ReadOnlyProvider(ResourceProvider, Generic[P]):
    """Diff over :attr:`inputs`; create/update = parse, run, merge; a no-op delete."""

    inputs: ClassVar[tuple[str, ...]]
    """The inputs whose change makes the resource run again."""

    def parse(self, raw: dict[str, Any]) -> P:
        """The typed inputs, rebuilt from the engine's raw property dict."""
        raise NotImplementedError

    def run(self, parsed: P) -> dict[str, Any]:
        """Do the reading; the facts found become outputs (or raise with what to do)."""
        raise NotImplementedError

    def resource_id(self, parsed: P) -> str:
        """The resource's deterministic id."""
        raise NotImplementedError

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in self.inputs if olds.get(k) != news.get(k)]
        return DiffResult(
            changes=bool(changed), replaces=[], stables=[], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        parsed = self.parse(props)
        facts = self.run(parsed)
        return CreateResult(id_=self.resource_id(parsed), outs={**parsed.to_outputs(), **facts})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        parsed = self.parse(news)
        facts = self.run(parsed)
        return UpdateResult(outs={**parsed.to_outputs(), **facts})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the resource only reads."""
