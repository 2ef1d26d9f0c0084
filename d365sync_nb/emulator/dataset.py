"""Deterministic synthetic D365 F&O metadata, shaped exactly like the OData metadata service.

``build_dataset(scale, version, seed)`` returns the same :class:`Dataset` on every run: every
random choice comes from one seeded :class:`random.Random`.

Version 2 is the next release of the same environment (application 10.0.41 -> 10.0.42): version
1 plus a small, deterministic delta of every kind a metadata diff must find. New module versions;
data entities and public entities added, removed and changed; fields (Properties) added, removed
and changed (type, IsMandatory, LabelId, ...); navigation properties and actions added and removed;
enumerations added and removed; enumeration members added, removed and changed (Value, LabelId);
new labels and changed label texts. Every change made is recorded, one dict per change, in
:attr:`Dataset.changes` (empty for version 1), so a diff can be checked exactly. The first public
entity, ``NoYes``, the second enumeration and the items carrying the special label ids are never
removed or changed.
"""

from __future__ import annotations

import builtins
import random
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

__all__ = ["SCALES", "Dataset", "ScaleSpec", "build_dataset"]

REFERENTIAL = "#Microsoft.Dynamics.Metadata.ReferentialConstraint"
FIXED = "#Microsoft.Dynamics.Metadata.FixedConstraint"
RELATED_FIXED = "#Microsoft.Dynamics.Metadata.RelatedFixedConstraint"

ENTITY_CATEGORIES = (
    "Master",
    "Transaction",
    "Configuration",
    "Reference",
    "Document",
    "Parameters",
)
BINDING_KINDS = ("BoundToEntityInstance", "BoundToEntitySet", "Unbound")

# Label ids that exercise client encoding: a quote (OData doubles it), space/ampersand, percent.
QUOTE_LABEL_ID = "@SYS:O'Brien"
SPACE_LABEL_ID = "@Retail:Price & Discount"
PERCENT_LABEL_ID = "@FieldDescriptions:Rate (100%)"
COMPANY_LABEL_ID = "@SYS13342"


@dataclass(frozen=True)
class ScaleSpec:
    """Sizes of one dataset scale."""

    data_entities: int
    public_entities: int
    properties: tuple[int, int]  # inclusive range per public entity
    enumerations: int
    members: tuple[int, int]  # inclusive range per enumeration
    label_cap: int  # maximum distinct label ids handed out
    field_vocab: int  # distinct property names available
    modules: int


SCALES: dict[str, ScaleSpec] = {
    "small": ScaleSpec(100, 80, (5, 40), 80, (2, 8), 1_200, 600, 20),
    "realistic": ScaleSpec(4_500, 3_500, (25, 55), 3_400, (2, 8), 27_000, 14_000, 150),
}


# --------------------------------------------------------------------------------------------
# Word lists
# --------------------------------------------------------------------------------------------
def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated word list."""
    return tuple(text.split())


_AREAS = (
    ("Cust", "Customer"),
    ("Vend", "Vendor"),
    ("Sales", "Sales"),
    ("Purch", "Purchase"),
    ("Invent", "Inventory"),
    ("WHS", "Warehouse"),
    ("Proj", "Project"),
    ("Ledger", "Ledger"),
    ("Bank", "Bank"),
    ("Tax", "Tax"),
    ("Budget", "Budget"),
    ("Prod", "Production"),
    ("Retail", "Retail"),
    ("HcmWorker", "Worker"),
    ("Asset", "Asset"),
    ("Payroll", "Payroll"),
    ("TrvExpense", "Expense"),
    ("EcoRes", "Product"),
    ("TMS", "Transport"),
    ("Qm", "Quality"),
    ("Req", "Planning"),
    ("Cost", "Cost"),
    ("Dir", "Party"),
    ("Log", "Logistics"),
    ("Mcr", "Channel"),
    ("Kanban", "Kanban"),
    ("Smm", "Campaign"),
    ("Hcm", "Position"),
    ("Rebate", "Rebate"),
    ("Sub", "Subscription"),
    ("Cash", "Cash"),
    ("Fiscal", "Fiscal"),
    ("Intercompany", "Intercompany"),
    ("Route", "Route"),
    ("Catch", "CatchWeight"),
    ("Gift", "GiftCard"),
    ("Loyalty", "Loyalty"),
    ("Freight", "Freight"),
    ("Dimension", "Dimension"),
    ("Currency", "Currency"),
    ("Payment", "Payment"),
    ("Document", "Document"),
)
_OBJECTS = _words("""
    Group OrderHeader OrderLine Invoice InvoiceLine Journal JournalLine Parameter Posting
    Account Address Contact Charge Discount Price Setup Category Attribute Template Rule Policy
    Schedule Calendar Code Type Status Transaction Balance Batch Location Agreement Confirmation
    Receipt Shipment Request Quotation Budget Allocation Settlement Statement Profile Method
    Term Reason Hold Note Role Assignment Registration Certificate
""")
_DETAILS = (
    "",
    "",
    "",
    "",
    *_words("""
    Detail Entry Mapping Summary History Setting Version Composite Staging Document
"""),
)
_VERSIONS = ("", "", "", "V2", "V2", "V3", "V4")

_MASTER_OBJECTS = frozenset(("Group", "Account", "Address", "Contact", "Profile", "Location"))
_TRANSACTION_OBJECTS = frozenset(
    _words("""
    OrderHeader OrderLine Journal JournalLine Transaction Posting Settlement Allocation Balance
    Batch
""")
)
_DOCUMENT_OBJECTS = frozenset(
    _words("""
    Invoice InvoiceLine Receipt Shipment Confirmation Quotation Statement Agreement Certificate
""")
)
_CONFIG_OBJECTS = frozenset(
    ("Setup", "Template", "Rule", "Policy", "Schedule", "Calendar", "Method")
)

_QUALIFIERS = _words("""
    Customer Vendor Sales Purchase Invoice Delivery Payment Ledger Main Offset Default Tax Item
    Product Warehouse Site Inventory Project Worker Bank Currency Exchange Discount Price Line
    Order Receipt Shipment Route Batch Serial Location Contact Primary Posting Budget Cost Asset
    Journal Voucher Settlement Cash Credit Transfer Return Production Quality Expense Released
    Intercompany Tracking Requested Confirmed Actual Original Legal Operating Store Channel
    Freight Carrier Charge Packing Picking Unit Financial Physical Buyer Commission Rebate
""")
# (attribute word, OData type name, DataType)
_ATTRIBUTES = (
    ("Account", "Edm.String", "String"),
    ("Name", "Edm.String", "String"),
    ("Date", "Edm.Date", "Date"),
    ("DateTime", "Edm.DateTimeOffset", "DateTime"),
    ("Amount", "Edm.Decimal", "Real"),
    ("Quantity", "Edm.Decimal", "Real"),
    ("Code", "Edm.String", "String"),
    ("Id", "Edm.String", "String"),
    ("Number", "Edm.String", "String"),
    ("Status", None, "Enum"),
    ("Type", None, "Enum"),
    ("Group", "Edm.String", "String"),
    ("Description", "Edm.String", "String"),
    ("Percentage", "Edm.Decimal", "Real"),
    ("City", "Edm.String", "String"),
    ("Street", "Edm.String", "String"),
    ("ZipCode", "Edm.String", "String"),
    ("CountryRegionId", "Edm.String", "String"),
    ("Email", "Edm.String", "String"),
    ("Phone", "Edm.String", "String"),
    ("Price", "Edm.Decimal", "Real"),
    ("Weight", "Edm.Decimal", "Real"),
    ("LineNumber", "Edm.Decimal", "Real"),
    ("RecId", "Edm.Int64", "Int64"),
    ("Count", "Edm.Int32", "Int32"),
    ("Days", "Edm.Int32", "Int32"),
    ("Method", None, "Enum"),
    ("Mode", None, "Enum"),
    ("Category", "Edm.String", "String"),
    ("Reference", "Edm.String", "String"),
    ("Note", "Edm.String", "String"),
    ("Guid", "Edm.Guid", "Guid"),
    ("Blocked", None, "Enum"),
    ("Image", "Edm.Binary", "Container"),
    ("Time", "Edm.Int32", "Time"),
    ("Unit", "Edm.String", "String"),
)
_ENUM_PREFIXES = _words("""
    Sales Purch Invent Cust Vend Ledger Tax Bank Proj WHS Retail Hcm Asset Budget Prod Req TMS
    Mcr Cost Trv Payroll EcoRes Smm Kanban Qm Dir Log Cash
""")
_ENUM_MIDDLES = (
    "",
    "",
    "",
    *_words("""
    Line Order Invoice Payment Price Discount Journal Trans Document Charge Unit Item Account
    Posting Delivery Batch Route
"""),
)
_ENUM_CORES = _words("""
    Status Type Mode Category Method Level Basis Origin Direction Priority Source State
    Calculation Rounding Reason Option Policy
""")
_MEMBER_NAMES = _words("""
    None Open Closed Invoiced Delivered Canceled Backorder Received Registered Picked Posted
    Draft Approved Rejected Pending Submitted InReview Completed Started Stopped Ended Scheduled
    Released Created Confirmed Blocked All Invoice Payment Table Group Percent Amount Quantity
    Fixed Variable Standard Manual Automatic Daily Weekly Monthly Yearly Low Normal High
    Critical Inbound Outbound Internal External Customer Vendor Worker Ledger Bank Project Item
    Service Product Warehouse Site Location Batch Serial First Last Average Minimum Maximum Sum
    Debit Credit Both Active Inactive Expired Locked Unlocked Reserved Ordered Physical
    Financial Estimated Actual Budget Forecast Committed Accrued Reversed Settled Partial Full
    Single Multiple Header Line Journal Voucher Default Custom Legacy
""")
_LABEL_FILES = _words("""
    AccountsReceivable AccountsPayable GeneralLedger SCM Retail Tax ProductInformationManagement
    WHS Proj HCM Budget FixedAssets CashManagement ExpenseManagement Payroll ElectronicReporting
    DMF GLS TRV ApplicationSuite SYP Procurement Sales Ledger Inventory
""")
_GROUP_NAMES = _words("""
    AutoLookup AutoReport AutoSummary AutoIdentification Overview General Details Dimensions
""")
_ACTION_VERBS = _words("""
    Post Submit Approve Reject Cancel Copy Recalculate Validate Confirm Release Close Reopen
    GetDefault Import Export Reverse Settle Print
""")
_PARAM_TYPES = _words("""
    Edm.String Edm.Int32 Edm.Int64 Edm.Boolean Edm.Decimal Edm.Date Edm.Guid
""")

_MS_MODULES = _words("""
    ApplicationSuite ApplicationPlatform ApplicationFoundation ApplicationCommon Directory
    Ledger GeneralLedger SourceDocumentation Currency ContactPerson CaseManagement Calendar
    Dimensions UnitOfMeasure Tax TaxEngine ElectronicReporting ElectronicReportingCore
    FinancialReporting FiscalBooks Retail Commerce CommerceRuntime Personnel PersonnelCore
    PersonnelManagement Payroll ProjectAccounting Warehouse TransportationManagement Inventory
    MasterPlanning ProductionControl Kanban QualityManagement AssetManagement FixedAssets
    Budgeting CashManagement BankManagement ExpenseManagement Travel Procurement CostManagement
    PriceDiscount Rebate Subscription RevenueRecognition BusinessProcess DataManagement
    DataImport Workflow Alerts DocumentRouting PrintManagement Batch SystemAdministration
    Security TestEssentials Office365 PowerPlatformIntegration DualWrite DataLake
    FeatureManagement GeneralLedgerPosting SubledgerJournal Consolidation IntercompanyAccounting
    PublicSector FleetManagement ServiceManagement CustomerService CallCenter Loyalty GiftCard
    Sustainability Planning DemandForecasting Kernel Directory365 Case Questionnaire Compliance
""")
_COUNTRIES = _words("""
    GER FRA GBR ITA ESP NLD BEL POL CZE HUN SWE NOR DNK FIN AUT CHE USA CAN MEX BRA IND JPN CHN
    AUS NZL SAU ARE EGY RUS THA MYS SGP EST LVA LTU
""")
_ISV_AREAS = _words("""
    Connector Banking EDI Shipping Reporting Payments Compliance Pricing Approvals Archiving
    Scanning Labels
""")

_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b)|[A-Z]?[a-z]+|\d+")


def _humanize(name: str) -> str:
    """Turn ``CustomerAccount`` into ``Customer account``."""
    words = _CAMEL_RE.findall(name) or [name]
    first, *rest = words
    return " ".join(
        [first[:1].upper() + first[1:], *(w if w.isupper() else w.lower() for w in rest)]
    )


def _plural(word: str) -> str:
    """English plural of the last word of a camel-case name."""
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """One global version of metadata, as the emulator serves it."""

    scale: str
    version: int
    seed: int
    data_entities: list[dict[str, Any]]
    public_entities: list[dict[str, Any]]
    enumerations: list[dict[str, Any]]
    labels: dict[str, str | None]
    modules: list[str]
    application_version: str
    platform_version: str
    #: What this version changed against version 1 (empty for version 1): one dict per change
    #: with keys kind, parent, name, change, attribute, before, after (see ``_apply_version2``).
    changes: list[dict[str, Any]] = field(default_factory=list)
    #: Label texts of the other languages served (``de``, ``da``), by id; ``None`` is not
    #: translated (404), ``""`` empty. Every other language gets the ``en-us`` texts.
    translations: dict[str, dict[str, str | None]] = field(default_factory=dict)
    _referenced: set[str] | None = field(default=None, init=False, repr=False, compare=False)

    def label_ids_referenced(self) -> set[str]:
        """Every distinct non-empty LabelId in the three collections (incl. properties, members)."""
        if self._referenced is None:
            ids: set[str] = set()
            add = ids.add
            for de in self.data_entities:
                add(de["LabelId"])
            for pe in self.public_entities:
                add(pe["LabelId"])
                for prop in pe["Properties"]:
                    add(prop["LabelId"])
            for en in self.enumerations:
                add(en["LabelId"])
                for member in en["Members"]:
                    add(member["LabelId"])
            ids.discard(None)
            ids.discard("")
            self._referenced = ids
        return set(self._referenced)

    def label_text(self, label_id: str, language: str) -> str | None:
        """The text served for a label in a language (any casing); ``None``: 404."""
        texts = self.translations.get(language.lower())
        return self.labels.get(label_id) if texts is None else texts.get(label_id)

    def untranslated(self, language: str) -> set[str]:
        """Referenced ids with an ``en-us`` text but none (404 or empty) in ``language``."""
        return {
            i
            for i in self.label_ids_referenced()
            if self.labels.get(i) and not self.label_text(i, language)
        }

    def expected_label_counts(self, language: str) -> dict[str, int]:
        """found / empty / missing among the referenced ids, in ``language``."""
        texts = [self.label_text(i, language) for i in self.label_ids_referenced()]
        return {
            "found": sum(1 for t in texts if t),
            "empty": sum(1 for t in texts if t == ""),
            "missing": sum(1 for t in texts if t is None),
        }

    def expected_counts(self) -> dict[str, int]:
        """Counts a complete, correct sync of this dataset must report."""
        referenced = self.label_ids_referenced()
        texts = [self.labels.get(i) for i in referenced]
        return {
            "data_entities": len(self.data_entities),
            "public_entities": len(self.public_entities),
            "properties": sum(len(pe["Properties"]) for pe in self.public_entities),
            "navigation_properties": sum(
                len(pe["NavigationProperties"]) for pe in self.public_entities
            ),
            "actions": sum(len(pe["Actions"]) for pe in self.public_entities),
            "enumerations": len(self.enumerations),
            "enumeration_members": sum(len(en["Members"]) for en in self.enumerations),
            "label_ids": len(referenced),
            "labels": sum(1 for t in texts if t),
            "labels_missing": sum(1 for t in texts if t is None),
            "labels_empty": sum(1 for t in texts if t == ""),
        }


class _LabelAllocator:
    """Hands out label ids per semantic key, reusing ids once the distinct-id cap is reached."""

    def __init__(self, rng: random.Random, cap: int) -> None:
        self.rng = rng
        self.cap = cap
        self.memo: dict[str, str] = {}
        self.ids: list[str] = []
        self.texts: dict[str, str | None] = {}
        self._sys_numbers: set[int] = set()

    def add(self, label_id: str, text: str) -> str:
        """Register a fixed label id with its text."""
        if label_id not in self.texts:
            self.ids.append(label_id)
        self.texts[label_id] = text
        return label_id

    def _new_id(self, hint: str) -> str:
        rng = self.rng
        if rng.random() < 0.55:
            while True:
                n = rng.randint(1000, 399_999)
                if n not in self._sys_numbers:
                    self._sys_numbers.add(n)
                    candidate = f"@SYS{n}"
                    if candidate not in self.texts:
                        return candidate
        base = f"@{rng.choice(_LABEL_FILES)}:{hint}"
        candidate, i = base, 1
        while candidate in self.texts:
            i += 1
            candidate = f"{base}{i}"
        return candidate

    def get(self, key: str, hint: str, text: str) -> str:
        """Label id for ``key``: a new id while under the cap, else a random existing one."""
        found = self.memo.get(key)
        if found is not None:
            return found
        if len(self.ids) < self.cap:
            label_id = self.add(self._new_id(hint), text)
        else:
            label_id = self.ids[self.rng.randrange(len(self.ids))]
        self.memo[key] = label_id
        return label_id


class _Builder:
    """Generates a dataset; one instance per build."""

    def __init__(self, scale: str, seed: int) -> None:
        self.spec = SCALES[scale]
        self.seed = seed
        self.rng = random.Random(f"d365sync-emulator:{scale}:{seed}")
        self.labels = _LabelAllocator(self.rng, self.spec.label_cap)
        self.used_names: set[str] = set()
        self.enum_names: list[str] = []
        self.public_names: list[str] = []
        self.data_entities: list[dict[str, Any]] = []
        self.public_entities: list[dict[str, Any]] = []
        self.enumerations: list[dict[str, Any]] = []
        self.vocab: list[tuple[str, str, str, str]] = []
        self.vocab_cum: list[float] = []
        self.referenced: set[str | None] = set()

    # -- names ---------------------------------------------------------------------------------
    def entity_names(self) -> tuple[str, str, str, str]:
        """Unique (data entity name, public name, collection name, base noun) tuple."""
        rng = self.rng
        while True:
            prefix, area = rng.choice(_AREAS)
            obj = rng.choice(_OBJECTS)
            detail = rng.choice(_DETAILS)
            ver = rng.choice(_VERSIONS)
            base = f"{area}{obj}{detail}"
            public = base + ver
            if public in self.used_names:
                continue
            self.used_names.add(public)
            collection = _plural(base) + ver
            de_name = f"{prefix}{obj}{detail}{ver}Entity"
            if de_name in self.used_names:
                de_name = f"{prefix}{area}{obj}{detail}{ver}Entity"
            if de_name in self.used_names:
                continue
            self.used_names.add(de_name)
            return de_name, public, collection, obj

    def enum_name(self) -> str:
        """A unique enumeration name."""
        rng = self.rng
        while True:
            name = rng.choice(_ENUM_PREFIXES) + rng.choice(_ENUM_MIDDLES) + rng.choice(_ENUM_CORES)
            if name not in self.used_names:
                self.used_names.add(name)
                return name

    # -- enumerations --------------------------------------------------------------------------
    def make_enum(self, name: str, members: list[str] | None = None) -> dict[str, Any]:
        """One PublicEnumerations item."""
        rng, labels = self.rng, self.labels
        if members is None:
            lo, hi = self.spec.members
            members = rng.sample(_MEMBER_NAMES, rng.randint(lo, hi))
        label = labels.get(f"enum:{name}", name, _humanize(name))
        value, out = 0, []
        for m in members:
            out.append(
                {
                    "Name": m,
                    "Value": value,
                    "LabelId": labels.get(f"member:{m}", m, _humanize(m))
                    if rng.random() > 0.03
                    else "",
                    "ConfigurationEnabled": rng.random() > 0.05,
                }
            )
            value += 1 if rng.random() > 0.15 else rng.randint(2, 10)
        return {"Name": name, "LabelId": label, "Members": out}

    def build_enums(self, count: int) -> None:
        """Generate ``count`` enumerations (NoYes first)."""
        self.used_names.add("NoYes")
        self.enumerations.append(self.make_enum("NoYes", ["No", "Yes"]))
        self.enum_names.append("NoYes")
        for _ in range(count - 1):
            name = self.enum_name()
            self.enum_names.append(name)
            self.enumerations.append(self.make_enum(name))

    # -- property vocabulary -------------------------------------------------------------------
    def build_vocab(self) -> None:
        """Distinct property names with fixed types; early entries are the most popular."""
        rng, size = self.rng, self.spec.field_vocab
        seen: set[str] = {"dataAreaId"}
        vocab: list[tuple[str, str, str, str]] = []
        attrs = [(a, t, d) for a, t, d in _ATTRIBUTES]
        for attr, type_name, data_type in attrs:  # single-word fields are the commonest
            seen.add(attr)
            vocab.append(self._field(attr, type_name, data_type))
        while len(vocab) < size:
            attr, type_name, data_type = rng.choice(attrs)
            if rng.random() < 0.7:
                name = rng.choice(_QUALIFIERS) + attr
            else:
                name = rng.choice(_QUALIFIERS) + rng.choice(_QUALIFIERS) + attr
            if name in seen:
                continue
            seen.add(name)
            vocab.append(self._field(name, type_name, data_type))
        self.vocab = vocab
        self.vocab_cum = list(accumulate(1.0 / (i + 8) for i in range(len(vocab))))

    def _field(self, name: str, type_name: str | None, data_type: str) -> tuple[str, str, str, str]:
        if data_type == "Enum":
            enum = "NoYes" if name.endswith("Blocked") else self.rng.choice(self.enum_names)
            type_name = f"Microsoft.Dynamics.DataEntities.{enum}"
        return name, type_name or "Edm.String", data_type, _humanize(name)

    # -- entities ------------------------------------------------------------------------------
    def make_data_entity(self, names: tuple[str, str, str, str]) -> dict[str, Any]:
        """One DataEntities item (DataServiceEnabled is decided by the caller)."""
        rng = self.rng
        de_name, public, collection, obj = names
        if obj in _TRANSACTION_OBJECTS:
            category = "Transaction"
        elif obj in _DOCUMENT_OBJECTS:
            category = "Document"
        elif obj == "Parameter":
            category = "Parameters"
        elif obj in _CONFIG_OBJECTS:
            category = "Configuration"
        elif obj in _MASTER_OBJECTS:
            category = "Master"
        else:
            category = rng.choice(ENTITY_CATEGORIES)
        label = (
            None
            if rng.random() < 0.02
            else self.labels.get(f"entity:{public}", public, _humanize(collection))
        )
        return {
            "Name": de_name,
            "PublicEntityName": public,
            "PublicCollectionName": collection,
            "LabelId": label,
            "DataServiceEnabled": False,
            "DataManagementEnabled": rng.random() > 0.1,
            "EntityCategory": category,
            "IsReadOnly": rng.random() < 0.08,
        }

    def make_properties(self, public: str) -> list[dict[str, Any]]:
        """The Properties of one public entity."""
        rng, labels, vocab = self.rng, self.labels, self.vocab
        lo, hi = self.spec.properties
        count = rng.randint(lo, hi)
        props: list[dict[str, Any]] = []
        names: set[str] = set()
        if rng.random() < 0.7:
            names.add("dataAreaId")
            props.append(
                self._prop(
                    "dataAreaId",
                    "Edm.String",
                    "String",
                    COMPANY_LABEL_ID,
                    key=True,
                    mandatory=False,
                )
            )
        n_keys = rng.randint(1, 3)
        cum, total = self.vocab_cum, self.vocab_cum[-1]
        attempts = 0
        while len(props) < count and attempts < count * 20:
            attempts += 1
            name, type_name, data_type, text = vocab[bisect_left(cum, rng.random() * total)]
            if name in names:
                continue
            names.add(name)
            r = rng.random()
            if r < 0.004:
                label = ""
            elif r < 0.10:  # entity-specific label for a common field
                label = labels.get(f"field:{public}.{name}", name, text)
            elif r < 0.13 and data_type == "Enum":  # field labelled like its enum
                enum = type_name.rsplit(".", 1)[-1]
                label = labels.get(f"enum:{enum}", enum, _humanize(enum))
            else:
                label = labels.get(f"field:{name}", name, text)
            is_key = len(props) < n_keys + ("dataAreaId" in names) and data_type == "String"
            props.append(
                self._prop(
                    name,
                    type_name,
                    data_type,
                    label,
                    key=is_key,
                    mandatory=is_key or rng.random() < 0.15,
                )
            )
        if rng.random() < 0.15:
            props.append(self._dimension_prop(public))
        return props

    def _prop(
        self, name: str, type_name: str, data_type: str, label: str, *, key: bool, mandatory: bool
    ) -> dict[str, Any]:
        rng = self.rng
        return {
            "Name": name,
            "TypeName": type_name,
            "DataType": data_type,
            "LabelId": label,
            "IsKey": key,
            "IsMandatory": mandatory,
            "ConfigurationEnabled": rng.random() > 0.03,
            "AllowEdit": not key and rng.random() > 0.1,
            "AllowEditOnCreate": rng.random() > 0.02,
            "IsDimension": False,  # the service: null, not "", for a plain property
            "DimensionRelation": None,
            "IsDynamicDimension": False,
            "DimensionLegalEntityProperty": None,
            "DimensionTypeProperty": None,
        }

    def _dimension_prop(self, public: str) -> dict[str, Any]:
        rng = self.rng
        relation = rng.choice(("DefaultDimension", "LedgerDimension", "OffsetLedgerDimension"))
        dynamic = relation != "DefaultDimension"
        prop = self._prop(
            f"{relation}DisplayValue",
            "Edm.String",
            "String",
            self.labels.get(f"dim:{relation}", relation, _humanize(relation)),
            key=False,
            mandatory=False,
        )
        prop.update(
            {
                "IsDimension": True,
                "DimensionRelation": relation,
                "IsDynamicDimension": dynamic,
                "DimensionLegalEntityProperty": "dataAreaId",
                "DimensionTypeProperty": "AccountType" if dynamic else "",
            }
        )
        return prop

    def make_navigation(
        self, props: list[dict[str, Any]], public: str, force_all: bool
    ) -> list[dict[str, Any]]:
        """NavigationProperties with all three constraint kinds present overall."""
        rng = self.rng
        count = 3 if force_all else rng.choice((0, 0, 1, 1, 2, 3, 4))
        navs, used = [], set()
        prop_names = [p["Name"] for p in props]
        for i in range(count):
            related = rng.choice(self.public_names)
            name = related if related not in used else f"{related}{i}"
            used.add(name)
            constraints: list[dict[str, Any]] = []
            for _ in range(rng.randint(1, 2)):
                p = rng.choice(prop_names)
                constraints.append(
                    {"@odata.type": REFERENTIAL, "Property": p, "ReferencedProperty": p}
                )
            kind = i if force_all else rng.randint(0, 6)
            if kind == 1:
                v = rng.randint(0, 5)
                constraints.append(
                    {
                        "@odata.type": FIXED,
                        "Property": rng.choice(prop_names),
                        "Value": v,
                        "ValueStr": str(v),
                    }
                )
            elif kind == 2:
                v = rng.randint(0, 5)
                constraints.append(
                    {
                        "@odata.type": RELATED_FIXED,
                        "RelatedProperty": rng.choice(prop_names),
                        "Value": v,
                        "ValueStr": rng.choice(_MEMBER_NAMES),
                    }
                )
            navs.append(
                {
                    "Name": name,
                    "RelatedEntity": related,
                    "RelatedRelationName": public,
                    "Cardinality": rng.choice(("Single", "Multiple")),
                    "Constraints": constraints,
                }
            )
        return navs

    def make_actions(self, props: list[dict[str, Any]], force_all: bool) -> list[dict[str, Any]]:
        """Actions with every BindingKind present overall."""
        rng = self.rng
        count = 3 if force_all else rng.choice((0, 0, 0, 0, 1, 1, 2, 3))
        verbs = rng.sample(_ACTION_VERBS, count)
        actions = []
        for i, verb in enumerate(verbs):
            params = [
                {
                    "Name": f"_{p[:1].lower()}{p[1:]}",
                    "Type": {
                        "TypeName": rng.choice(_PARAM_TYPES),
                        "IsCollection": rng.random() < 0.1,
                    },
                }
                for p in rng.sample(
                    ("SalesId", "Reason", "Quantity", "Company", "Date", "Account", "Comment"),
                    rng.randint(0, 3),
                )
            ]
            returns = (
                None
                if rng.random() < 0.4
                else {"TypeName": rng.choice(_PARAM_TYPES), "IsCollection": rng.random() < 0.2}
            )
            actions.append(
                {
                    "Name": verb,
                    "BindingKind": BINDING_KINDS[i] if force_all else rng.choice(BINDING_KINDS),
                    "FieldLookup": rng.choice(props)["Name"] if rng.random() < 0.1 else None,
                    "Parameters": params,
                    "ReturnType": returns,
                }
            )
        return actions

    def make_public_entity(self, de: dict[str, Any], force_all: bool = False) -> dict[str, Any]:
        """One PublicEntities item matching a data entity."""
        rng = self.rng
        public = de["PublicEntityName"]
        props = self.make_properties(public)
        groups = []
        for g in rng.sample(_GROUP_NAMES, rng.choice((0, 1, 1, 2, 3))):
            groups.append(
                {
                    "Name": g,
                    "Properties": [
                        p["Name"] for p in rng.sample(props, min(len(props), rng.randint(1, 6)))
                    ],
                }
            )
        return {
            "Name": public,
            "EntitySetName": de["PublicCollectionName"],
            "LabelId": de["LabelId"],
            "IsReadOnly": de["IsReadOnly"],
            "ConfigurationEnabled": rng.random() > 0.05,
            "Properties": props,
            "NavigationProperties": self.make_navigation(props, public, force_all),
            "PropertyGroups": groups,
            "Actions": self.make_actions(props, force_all),
        }

    def build_entities(self) -> None:
        """Data entities, then the public subset with full schemas."""
        spec, rng = self.spec, self.rng
        names = [self.entity_names() for _ in range(spec.data_entities)]
        for n in names:
            self.data_entities.append(self.make_data_entity(n))
        public_idx = sorted(rng.sample(range(spec.data_entities), spec.public_entities))
        self.public_names = [names[i][1] for i in public_idx]
        for k, i in enumerate(public_idx):
            de = self.data_entities[i]
            de["DataServiceEnabled"] = True
            self.public_entities.append(self.make_public_entity(de, force_all=k == 0))

    # -- labels --------------------------------------------------------------------------------
    def place_special_labels(self) -> None:
        """Put ids needing URL/quote handling where a sync will meet them."""
        labels = self.labels
        pe = next(p for p in self.public_entities if p["LabelId"])
        de = next(d for d in self.data_entities if d["PublicEntityName"] == pe["Name"])
        de["LabelId"] = pe["LabelId"] = labels.add(QUOTE_LABEL_ID, "O'Brien contact details")
        self.enumerations[1]["LabelId"] = labels.add(SPACE_LABEL_ID, "Price & discount")
        pe["Properties"][-1]["LabelId"] = labels.add(PERCENT_LABEL_ID, "Rate (100%)")

    def finalize_labels(self) -> dict[str, str | None]:
        """Label texts; ~2% of referenced ids unknown (None), ~1% empty."""
        texts = dict(self.labels.texts)
        referenced: set[str | None] = set()
        for coll in (self.data_entities, self.public_entities, self.enumerations):
            for item in coll:
                referenced.add(item["LabelId"])
                for sub in item.get("Properties", ()) or item.get("Members", ()):
                    referenced.add(sub["LabelId"])
        referenced.discard(None)
        referenced.discard("")
        self.referenced = referenced
        special = {QUOTE_LABEL_ID, SPACE_LABEL_ID, PERCENT_LABEL_ID, COMPANY_LABEL_ID}
        candidates = sorted(i for i in referenced if i and i not in special)
        picked = self.rng.sample(candidates, max(2, round(len(candidates) * 0.03)))
        n_missing = max(1, round(len(candidates) * 0.02))
        for i in picked[:n_missing]:
            texts[i] = None
        for i in picked[n_missing:]:
            texts[i] = ""
        return texts


def _module_line(name: str, version: str, publisher: str) -> str:
    display = " ".join(_CAMEL_RE.findall(name))
    return (
        f"Name: {name} | Version: {version} | Module: {name} | Publisher: {publisher} | "
        f"DisplayName: {display}"
    )


def _modules(count: int, version: int) -> list[str]:
    names: list[tuple[str, str, str]] = []
    for m in _MS_MODULES:
        ver = (
            "7.0.7367.49"
            if m in ("ApplicationPlatform", "ApplicationFoundation")
            else "10.0.2095.71"
        )
        names.append((m, ver, "Microsoft Corporation"))
    names.extend(
        (f"ApplicationSuiteLocalization{c}", "10.0.2095.71", "Microsoft Corporation")
        for c in _COUNTRIES
    )
    names.extend(
        (f"Contoso{a}", f"2.{i}.0.{10 + i}", "Contoso Ltd.") for i, a in enumerate(_ISV_AREAS)
    )
    names.extend(
        (f"Fabrikam{a}", f"1.{i}.3.{i}", "Fabrikam Inc.") for i, a in enumerate(_ISV_AREAS)
    )
    names.extend(
        (f"Adatum{a}", f"3.0.{i}.0", "Adatum Corporation") for i, a in enumerate(_ISV_AREAS)
    )
    selected = names[:count]
    if version >= 2:
        selected[0] = (selected[0][0], "10.0.2095.92", selected[0][2])
        selected.append(("ContosoWarehouseExtensions", "1.0.0.1", "Contoso Ltd."))
    return [_module_line(n, v, p) for n, v, p in selected]


_CHANGE_KINDS = ("entity", "data_entity", "field", "navigation", "action", "enumeration", "member")
_SNAKE_RE = re.compile(r"(?<!^)(?=[A-Z])")


class _Delta:
    """Applies the version 2 delta to a builder and records every change it makes."""

    def __init__(self, b: _Builder, rng: random.Random) -> None:
        self.b = b
        self.rng = rng
        self.rows: list[dict[str, Any]] = []

    # -- recording -----------------------------------------------------------------------------
    def record(self, kind: str, parent: str | None, name: str, change: str) -> None:
        """One added/removed row."""
        assert kind in _CHANGE_KINDS
        self.rows.append(
            {
                "kind": kind,
                "parent": parent,
                "name": name,
                "change": change,
                "attribute": None,
                "before": None,
                "after": None,
            }
        )

    def set(
        self, kind: str, parent: str | None, item: dict[str, Any], key: str, value: Any
    ) -> None:
        """Change ``item[key]`` to ``value`` and record one changed row."""
        before = item[key]
        assert before != value, (kind, item["Name"], key)
        item[key] = value
        self.rows.append(
            {
                "kind": kind,
                "parent": parent,
                "name": item["Name"],
                "change": "changed",
                "attribute": _SNAKE_RE.sub("_", key).lower(),
                "before": before,
                "after": value,
            }
        )

    def sorted_rows(self) -> list[dict[str, Any]]:
        """The rows sorted by (kind, parent, name, change, attribute)."""
        return sorted(
            self.rows,
            key=lambda r: (
                r["kind"],
                r["parent"] or "",
                r["name"],
                r["change"],
                r["attribute"] or "",
            ),
        )

    # -- data entities / public entities -------------------------------------------------------
    def entities(self, protected: builtins.set[str], new_publics: builtins.set[str]) -> None:
        """Remove 5 data entities (3 with public entities) and change 3."""
        b, rng = self.b, self.rng
        related = {
            nav["RelatedEntity"] for pe in b.public_entities for nav in pe["NavigationProperties"]
        }
        old = [
            de
            for de in b.data_entities
            if de["Name"] not in protected and de["PublicEntityName"] not in new_publics
        ]
        with_public = [
            de for de in old if de["DataServiceEnabled"] and de["PublicEntityName"] not in related
        ]
        without_public = [de for de in old if not de["DataServiceEnabled"]]
        removed = rng.sample(with_public, 3) + rng.sample(without_public, 2)
        gone_de = {de["Name"] for de in removed}
        gone_pe = {de["PublicEntityName"] for de in removed if de["DataServiceEnabled"]}
        b.data_entities = [de for de in b.data_entities if de["Name"] not in gone_de]
        b.public_entities = [pe for pe in b.public_entities if pe["Name"] not in gone_pe]
        b.public_names = [n for n in b.public_names if n not in gone_pe]
        for de in removed:
            self.record("data_entity", None, de["Name"], "removed")
        for de in removed[:3]:
            self.record("entity", None, de["PublicEntityName"], "removed")

        kept = [de for de in old if de["Name"] not in gone_de]
        ro = rng.choice([de for de in kept if de["DataServiceEnabled"]])
        category, dme = rng.sample([de for de in kept if de is not ro], 2)
        pe = next(p for p in b.public_entities if p["Name"] == ro["PublicEntityName"])
        self.set("data_entity", None, ro, "IsReadOnly", not ro["IsReadOnly"])
        self.set("entity", None, pe, "IsReadOnly", ro["IsReadOnly"])
        others = [c for c in ENTITY_CATEGORIES if c != category["EntityCategory"]]
        self.set("data_entity", None, category, "EntityCategory", rng.choice(others))
        self.set(
            "data_entity", None, dme, "DataManagementEnabled", not dme["DataManagementEnabled"]
        )

    # -- fields, navigation properties, actions ------------------------------------------------
    @staticmethod
    def _used_names(pe: dict[str, Any]) -> builtins.set[str]:
        """Property names other parts of the entity point at (never removed)."""
        used: builtins.set[str] = set()
        for nav in pe["NavigationProperties"]:
            for c in nav["Constraints"]:
                used.add(c.get("Property") or c.get("RelatedProperty") or "")
        for action in pe["Actions"]:
            used.add(action["FieldLookup"] or "")
        for group in pe["PropertyGroups"]:
            used.update(group["Properties"])
        for p in pe["Properties"]:
            used.update((p["DimensionLegalEntityProperty"], p["DimensionTypeProperty"]))
        return used

    def schema(self, eligible: list[dict[str, Any]]) -> None:
        """Fields: 5 added, 5 removed, 5 changed; navigation and actions: 1 added, 1 removed."""
        b, rng = self.b, self.rng
        pool = rng.sample(eligible, len(eligible))  # every operation on its own entity

        def take(ok: Any) -> dict[str, Any]:
            for i, pe in enumerate(pool):
                if ok(pe):
                    return pool.pop(i)
            raise RuntimeError("no public entity left for a version 2 change")

        def plain(p: dict[str, Any]) -> bool:
            return not p["IsKey"] and not p["IsDimension"] and p["LabelId"] != PERCENT_LABEL_ID

        cum, total = b.vocab_cum, b.vocab_cum[-1]
        for _ in range(5):  # fields added
            pe = take(lambda _pe: True)
            names = {p["Name"] for p in pe["Properties"]}
            while True:
                name, type_name, data_type, text = b.vocab[bisect_left(cum, rng.random() * total)]
                if name not in names:
                    break
            label = b.labels.get(f"field:{name}", name, text)
            prop = b._prop(
                name, type_name, data_type, label, key=False, mandatory=rng.random() < 0.15
            )
            pe["Properties"].append(prop)
            self.record("field", pe["Name"], name, "added")

        def removable(pe: dict[str, Any]) -> list[dict[str, Any]]:
            used = self._used_names(pe)
            return [p for p in pe["Properties"] if plain(p) and p["Name"] not in used]

        for _ in range(5):  # fields removed (never a key)
            pe = take(removable)
            prop = rng.choice(removable(pe))
            pe["Properties"].remove(prop)
            self.record("field", pe["Name"], prop["Name"], "removed")

        def pick(ok: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            pe = take(lambda e: any(plain(p) and ok(p) for p in e["Properties"]))
            return pe, rng.choice([p for p in pe["Properties"] if plain(p) and ok(p)])

        pe, prop = pick(lambda p: p["TypeName"] == "Edm.String")  # a type change
        self.set("field", pe["Name"], prop, "TypeName", "Edm.Int64")
        self.set("field", pe["Name"], prop, "DataType", "Int64")
        pe, prop = pick(lambda p: True)
        self.set("field", pe["Name"], prop, "IsMandatory", not prop["IsMandatory"])
        pe, prop = pick(lambda p: True)
        name = prop["Name"]
        label = b.labels.get(f"v2:field:{pe['Name']}.{name}", name, f"{_humanize(name)} (new)")
        self.set("field", pe["Name"], prop, "LabelId", label)
        pe, prop = pick(lambda p: True)
        self.set("field", pe["Name"], prop, "AllowEdit", not prop["AllowEdit"])
        pe, prop = pick(lambda p: True)
        self.set(
            "field", pe["Name"], prop, "ConfigurationEnabled", not prop["ConfigurationEnabled"]
        )

        # a navigation property added, one removed
        pe = take(lambda e: len(e["Properties"]) > 0)
        navs = pe["NavigationProperties"]
        names = {n["Name"] for n in navs}
        related = rng.choice(b.public_names)
        name, i = related, 1
        while name in names:
            i += 1
            name = f"{related}{i}"
        p = rng.choice(pe["Properties"])["Name"]
        navs.append(
            {
                "Name": name,
                "RelatedEntity": related,
                "RelatedRelationName": pe["Name"],
                "Cardinality": rng.choice(("Single", "Multiple")),
                "Constraints": [
                    {"@odata.type": REFERENTIAL, "Property": p, "ReferencedProperty": p}
                ],
            }
        )
        self.record("navigation", pe["Name"], name, "added")

        def unique_navs(e: dict[str, Any]) -> bool:
            names = [n["Name"] for n in e["NavigationProperties"]]
            return bool(names) and len(set(names)) == len(names)

        pe = take(unique_navs)
        nav = pe["NavigationProperties"].pop(rng.randrange(len(pe["NavigationProperties"])))
        self.record("navigation", pe["Name"], nav["Name"], "removed")

        # an action added, one removed
        pe = take(lambda e: len(e["Actions"]) < len(_ACTION_VERBS))
        have = {a["Name"] for a in pe["Actions"]}
        verb = rng.choice([v for v in _ACTION_VERBS if v not in have])
        pe["Actions"].append(
            {
                "Name": verb,
                "BindingKind": rng.choice(BINDING_KINDS),
                "FieldLookup": None,
                "Parameters": [
                    {"Name": "_reason", "Type": {"TypeName": "Edm.String", "IsCollection": False}}
                ],
                "ReturnType": {"TypeName": "Edm.Boolean", "IsCollection": False},
            }
        )
        self.record("action", pe["Name"], verb, "added")
        pe = take(lambda e: len(e["Actions"]) > 0)
        action = pe["Actions"].pop(rng.randrange(len(pe["Actions"])))
        self.record("action", pe["Name"], action["Name"], "removed")

    # -- enumerations ---------------------------------------------------------------------------
    def enumerations(self, protected: builtins.set[str], new_enums: builtins.set[str]) -> None:
        """Remove 5 unreferenced enumerations; members: 5 added, 2 removed, 2 changed."""
        b, rng = self.b, self.rng
        type_names = {p["TypeName"] for pe in b.public_entities for p in pe["Properties"]}
        referenced = {t.rsplit(".", 1)[-1] for t in type_names}
        old = [
            en
            for en in b.enumerations
            if en["Name"] not in protected
            and en["Name"] not in new_enums
            and en["LabelId"] != SPACE_LABEL_ID
        ]
        removed = rng.sample([en for en in old if en["Name"] not in referenced], 5)
        gone = {en["Name"] for en in removed}
        b.enumerations = [en for en in b.enumerations if en["Name"] not in gone]
        for en in removed:
            self.record("enumeration", None, en["Name"], "removed")

        kept = [en for en in old if en["Name"] not in gone]
        pool = rng.sample(kept, len(kept))  # every operation on its own enumeration
        for en in pool[:5]:  # members added
            members = en["Members"]
            have = {m["Name"] for m in members}
            name = rng.choice([m for m in _MEMBER_NAMES if m not in have])
            members.append(
                {
                    "Name": name,
                    "Value": max(m["Value"] for m in members) + 1,
                    "LabelId": b.labels.get(f"member:{name}", name, _humanize(name)),
                    "ConfigurationEnabled": True,
                }
            )
            self.record("member", en["Name"], name, "added")
        del pool[:5]
        for _ in range(2):  # members removed, from enumerations that keep at least two
            en = pool.pop(next(i for i, e in enumerate(pool) if len(e["Members"]) > 2))
            member = en["Members"].pop(rng.randrange(len(en["Members"])))
            self.record("member", en["Name"], member["Name"], "removed")
        en = pool[0]
        member = rng.choice(en["Members"])
        top = max(m["Value"] for m in en["Members"])
        self.set("member", en["Name"], member, "Value", top + rng.randint(1, 5))
        en = pool[1]
        member = rng.choice(en["Members"])
        name = member["Name"]
        label = b.labels.get(f"v2:member:{en['Name']}.{name}", name, f"{_humanize(name)} (new)")
        self.set("member", en["Name"], member, "LabelId", label)


def _apply_version2(b: _Builder, labels: dict[str, str | None]) -> list[dict[str, Any]]:
    """Turn version 1 into the next release; return the changes made, sorted.

    Added: 6 data entities (4 with public entities), 3 enumerations, 5 fields, 5 enumeration
    members, a navigation property and an action. Removed: 5 data entities (3 with their public
    entities, none a navigation target), 5 enumerations no property uses, 5 non-key fields
    nothing in their entity points at, 2 members, a navigation property and an action. Changed:
    3 data entities (IsReadOnly, also on its public entity; EntityCategory;
    DataManagementEnabled), 5 fields (TypeName and DataType; IsMandatory; LabelId to a new
    label; AllowEdit; ConfigurationEnabled), a member's Value and another member's LabelId, and
    8 label texts. Each field, navigation property, action and member operation is on its own
    entity or enumeration, present in both versions.
    """
    rng = random.Random(f"d365sync-emulator:v2:{b.spec.data_entities}:{b.seed}")
    b.rng = b.labels.rng = rng
    candidates = sorted(i for i in b.referenced if i and labels[i] and i != QUOTE_LABEL_ID)
    for i in rng.sample(candidates, 8):
        labels[i] = f"{labels[i]} (revised)"
    b.labels.cap = len(b.labels.ids) + 1_000  # new keys get new ids again

    # never removed or changed: the first public entity (built with force_all), the items that
    # carry the special label ids, the first data entity, NoYes and the second enumeration
    first = b.public_entities[0]["Name"]
    special = {QUOTE_LABEL_ID, SPACE_LABEL_ID, PERCENT_LABEL_ID}
    keep_publics = {first} | {
        pe["Name"]
        for pe in b.public_entities
        if not special.isdisjoint([pe["LabelId"], *(p["LabelId"] for p in pe["Properties"])])
    }
    keep_des = {b.data_entities[0]["Name"]} | {
        de["Name"]
        for de in b.data_entities
        if de["LabelId"] in special or de["PublicEntityName"] in keep_publics
    }
    keep_enums = {"NoYes", b.enumerations[1]["Name"]}
    v1_publics = [pe for pe in b.public_entities if pe["Name"] not in keep_publics]

    delta = _Delta(b, rng)
    new_des = [b.make_data_entity(b.entity_names()) for _ in range(6)]
    b.data_entities.extend(new_des)
    for de in new_des:
        delta.record("data_entity", None, de["Name"], "added")
    for de in new_des[:4]:
        de["DataServiceEnabled"] = True
        b.public_entities.append(b.make_public_entity(de))
        delta.record("entity", None, de["PublicEntityName"], "added")
    new_enums = [b.make_enum(b.enum_name()) for _ in range(3)]
    b.enumerations.extend(new_enums)
    for en in new_enums:
        delta.record("enumeration", None, en["Name"], "added")

    delta.entities(keep_des, {de["PublicEntityName"] for de in new_des})
    present = {pe["Name"] for pe in b.public_entities}
    delta.schema([pe for pe in v1_publics if pe["Name"] in present])
    delta.enumerations(keep_enums, {en["Name"] for en in new_enums})
    for label_id, text in b.labels.texts.items():
        labels.setdefault(label_id, text)
    return delta.sorted_rows()


def build_dataset(scale: str = "small", version: int = 1, seed: int = 365) -> Dataset:
    """Build the deterministic dataset for ``scale`` (small | realistic) and global ``version``."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: expected one of {', '.join(SCALES)}")
    if version not in (1, 2):
        raise ValueError(f"unknown version {version!r}: expected 1 or 2")
    b = _Builder(scale, seed)
    b.labels.add(COMPANY_LABEL_ID, "Company")
    b.build_enums(b.spec.enumerations)
    b.build_vocab()
    b.build_entities()
    b.place_special_labels()
    labels = b.finalize_labels()
    untranslated = _untranslated(b, labels, seed)
    v1_labels = dict(labels)
    changes = _apply_version2(b, labels) if version == 2 else []
    translations = {
        lang: _translate(labels, lang, untranslated if lang == "de" else {})
        for lang in TRANSLATED
    }
    if version == 2:
        changes = sorted(
            changes + _label_changes(b, v1_labels, labels, untranslated, seed),
            key=_change_order,
        )
    return Dataset(
        scale=scale,
        version=version,
        seed=seed,
        data_entities=b.data_entities,
        public_entities=b.public_entities,
        enumerations=b.enumerations,
        labels=labels,
        modules=_modules(b.spec.modules, version),
        application_version="10.0.41.2095" if version == 1 else "10.0.42.2150",
        platform_version="7.0.7367.49" if version == 1 else "7.0.7367.52",
        changes=changes,
        translations=translations,
    )


#: The languages served besides ``en-us`` (German with gaps, Danish complete).
TRANSLATED = ("de", "da")


def _untranslated(b: _Builder, labels: dict[str, str | None], seed: int) -> dict[str, str | None]:
    """German gaps: ~3% of the texts found in ``en-us``, two thirds unknown (404), one third
    empty; never the special label ids."""
    rng = random.Random(f"d365sync-emulator:de:{b.spec.data_entities}:{seed}")
    special = {QUOTE_LABEL_ID, SPACE_LABEL_ID, PERCENT_LABEL_ID, COMPANY_LABEL_ID}
    candidates = sorted(i for i in b.referenced if i and labels.get(i) and i not in special)
    picked = rng.sample(candidates, max(3, round(len(candidates) * 0.03)))
    cut = (2 * len(picked)) // 3
    return {i: (None if n < cut else "") for n, i in enumerate(picked)}


def _translate(
    labels: dict[str, str | None], language: str, gaps: dict[str, str | None]
) -> dict[str, str | None]:
    """A language's texts: the ``en-us`` text marked with the language, gaps as given."""
    out: dict[str, str | None] = {
        i: (f"{t} ({language})" if t else t) for i, t in labels.items()
    }
    out.update((i, t) for i, t in gaps.items() if i in out)
    return out


def _label_changes(
    b: _Builder,
    before: dict[str, str | None],
    after: dict[str, str | None],
    gaps: dict[str, str | None],
    seed: int,
) -> list[dict[str, Any]]:
    """The label texts the release changed, one row per language, for the ids version 1 and
    version 2 both reference (what a diff of the two sees)."""
    referenced = {i for i in b.referenced if i}
    now: set[str] = set()
    for coll in (b.data_entities, b.public_entities, b.enumerations):
        for item in coll:
            for sub in (item, *(item.get("Properties", ()) or item.get("Members", ()))):
                if sub["LabelId"]:
                    now.add(sub["LabelId"])
    rows = []
    for label_id in sorted(referenced & now):
        if before.get(label_id) == after.get(label_id):
            continue
        for language in ("en-us", *TRANSLATED):
            gap = gaps if language == "de" else {}
            old = _translate({label_id: before[label_id]}, language, gap)[label_id]
            new = _translate({label_id: after[label_id]}, language, gap)[label_id]
            if language == "en-us":
                old, new = before[label_id], after[label_id]
            if old != new:
                rows.append(
                    {
                        "kind": "label",
                        "parent": None,
                        "name": label_id,
                        "change": "changed",
                        "attribute": language,
                        "before": old,
                        "after": new,
                    }
                )
    return rows


def _change_order(row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (
        row["kind"],
        row["parent"] or "",
        row["name"],
        row["change"],
        row["attribute"] or "",
    )
