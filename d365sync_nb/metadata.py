"""Pydantic models of what the D365 F&O metadata service returns.

Field aliases are the service's own names (``LabelId``, ``@odata.type``); Python names are
snake_case. Unknown fields are ignored so a newer service does not break the client.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal


class ServiceModel(BaseModel):
    """Base: PascalCase aliases, populate by name, ignore unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_pascal, populate_by_name=True, extra="ignore", frozen=False
    )


class DataEntity(ServiceModel):
    name: str
    public_entity_name: str | None = None
    public_collection_name: str | None = None
    label_id: str | None = None
    data_service_enabled: bool = False
    data_management_enabled: bool = False
    entity_category: str | None = None
    is_read_only: bool = False


class EntityProperty(ServiceModel):
    name: str
    type_name: str | None = None
    data_type: str | None = None
    label_id: str | None = None
    is_key: bool = False
    is_mandatory: bool = False
    configuration_enabled: bool = False
    allow_edit: bool = False
    allow_edit_on_create: bool = False
    is_dimension: bool = False
    dimension_relation: str | None = None
    is_dynamic_dimension: bool = False
    dimension_legal_entity_property: str | None = None
    dimension_type_property: str | None = None


# Some versions name the text of a fixed value ``StringValue`` instead of ``ValueStr``.
_VALUE_STR: Any = Field(
    default=None,
    validation_alias=AliasChoices("ValueStr", "StringValue", "value_str"),
    serialization_alias="ValueStr",
)


class ReferentialConstraint(ServiceModel):
    odata_type: Annotated[str, Field(alias="@odata.type")]
    property: str | None = None
    referenced_property: str | None = None


class FixedConstraint(ServiceModel):
    odata_type: Annotated[str, Field(alias="@odata.type")]
    property: str | None = None
    value: int | str | None = None
    value_str: str | None = _VALUE_STR


class RelatedFixedConstraint(ServiceModel):
    odata_type: Annotated[str, Field(alias="@odata.type")]
    related_property: str | None = None
    value: int | str | None = None
    value_str: str | None = _VALUE_STR


Constraint = ReferentialConstraint | FixedConstraint | RelatedFixedConstraint


def parse_constraint(raw: dict[str, Any]) -> Constraint:
    """Pick the constraint model from the ``@odata.type`` suffix."""
    kind = str(raw.get("@odata.type", ""))
    if kind.endswith("RelatedFixedConstraint"):
        return RelatedFixedConstraint.model_validate(raw)
    if kind.endswith("FixedConstraint"):
        return FixedConstraint.model_validate(raw)
    return ReferentialConstraint.model_validate(raw)


def constraint_kind(constraint: Constraint) -> str:
    """Short kind name of a constraint: Referential, Fixed or RelatedFixed."""
    return type(constraint).__name__.removesuffix("Constraint")


class NavigationProperty(ServiceModel):
    name: str
    related_entity: str | None = None
    related_relation_name: str | None = None
    cardinality: str | None = None
    constraints: list[Constraint] = Field(default_factory=list)

    @classmethod
    def from_service(cls, raw: dict[str, Any]) -> NavigationProperty:
        data = dict(raw)
        data["Constraints"] = [parse_constraint(c) for c in raw.get("Constraints") or []]
        return cls.model_validate(data)


class PropertyGroup(ServiceModel):
    name: str
    properties: list[str] = Field(default_factory=list)


class ActionTypeInfo(ServiceModel):
    type_name: str | None = None
    is_collection: bool = False


class ActionParameter(ServiceModel):
    name: str
    type: ActionTypeInfo | None = None


class EntityAction(ServiceModel):
    name: str
    binding_kind: str | None = None
    field_lookup: str | None = None
    parameters: list[ActionParameter] = Field(default_factory=list)
    return_type: ActionTypeInfo | None = None


class PublicEntity(ServiceModel):
    name: str
    entity_set_name: str | None = None
    label_id: str | None = None
    is_read_only: bool = False
    configuration_enabled: bool = False
    properties: list[EntityProperty] = Field(default_factory=list)
    navigation_properties: list[NavigationProperty] = Field(default_factory=list)
    property_groups: list[PropertyGroup] = Field(default_factory=list)
    actions: list[EntityAction] = Field(default_factory=list)

    @classmethod
    def from_service(cls, raw: dict[str, Any]) -> PublicEntity:
        """Validate one item of ``/Metadata/PublicEntities`` (constraints by ``@odata.type``)."""
        navs = raw.get("NavigationProperties") or []
        if navs:
            raw = dict(raw)
            raw["NavigationProperties"] = [NavigationProperty.from_service(n) for n in navs]
        return cls.model_validate(raw)


class EnumerationMember(ServiceModel):
    name: str
    value: int | None = None
    label_id: str | None = None
    configuration_enabled: bool = False


class PublicEnumeration(ServiceModel):
    name: str
    label_id: str | None = None
    members: list[EnumerationMember] = Field(default_factory=list)


LabelStatus = Literal["found", "empty", "missing", "failed"]


class Label(ServiceModel):
    """One label. ``error``: why the service refused it (after retries); such a label is kept
    like a missing one, with status ``failed`` (fetched again by the next sync)."""

    id: str
    language: str = "en-us"
    value: str | None = None
    error: str | None = None
    http_status: int | None = None

    @classmethod
    def fetched(cls, label_id: str, language: str, value: str | None) -> Label:
        """A label as the service answered it (``value`` checked by the caller): what
        ``model_construct`` builds, without its generic walk over the fields (~7 us of a label
        request, one per label of a sync)."""
        label = cls.__new__(cls)
        _set = object.__setattr__
        _set(label, "__dict__", {"id": label_id, "language": language, "value": value,
                                 "error": None, "http_status": None})  # fmt: skip
        _set(label, "__pydantic_fields_set__", {"id", "language", "value"})
        _set(label, "__pydantic_extra__", None)
        _set(label, "__pydantic_private__", None)
        return label

    @property
    def status(self) -> LabelStatus:
        if self.error is not None:
            return "failed"
        if self.value is None:
            return "missing"
        return "found" if self.value else "empty"


def is_label_id(text: str) -> bool:
    """Whether a ``LabelId`` names a label (``@SYS123``, ``@Module:Name``) rather than holding
    the text itself, as the service does for some fields and entities."""
    return text.startswith("@") and len(text) > 1


_MODULE_FIELD = re.compile(r"\s*(\w+)\s*:\s*(.*?)\s*$")


class InstalledModule(BaseModel):
    """One line of ``GetInstalledModules``: ``Name: X | Version: 1.2 | Module: X | ...``."""

    name: str
    version: str = ""
    module: str = ""
    publisher: str = ""
    display_name: str = ""

    @classmethod
    def parse(cls, line: str) -> InstalledModule:
        fields: dict[str, str] = {}
        for part in line.split("|"):
            match = _MODULE_FIELD.match(part)
            if match:
                fields[match.group(1).lower()] = match.group(2)
        name = fields.get("name") or line.strip()
        return cls(
            name=name,
            version=fields.get("version", ""),
            module=fields.get("module", name),
            publisher=fields.get("publisher", ""),
            display_name=fields.get("displayname", ""),
        )


class EnvironmentVersion(BaseModel):
    """What identifies a global version: the installed modules, plus the app/platform builds."""

    modules: list[InstalledModule]
    application_version: str | None = None
    platform_version: str | None = None

    @property
    def modules_hash(self) -> str:
        """Stable hash of the sorted (name, version) pairs: equal modules, equal metadata."""
        pairs = sorted(f"{m.name}={m.version}" for m in self.modules)
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()
