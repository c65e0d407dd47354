"""``deen run``'s settings: one tree of small dataclasses (:class:`LiveSettings`).

Each stage's section is defined beside the stage (tracking in :mod:`deen.runtime.tracking`,
matching and embedding in :mod:`deen.runtime.matching`, …); this module puts them together
with the run's own sections (model, gallery, outputs, run). ``deen run --config FILE`` reads
a TOML file of them, ``--set section.key=value`` overrides one, the command line's flags set
the keys an operator needs, and ``deen run --print-config`` prints the result
(:func:`deen.settings.to_toml`). The generic machinery is :mod:`deen.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deen.errors import ParameterError
from deen.runtime.detect import DetectionSettings
from deen.runtime.event_sinks import MqttTarget, SinkKind, sink_format
from deen.runtime.faults import DEFAULT_FAIL_AFTER_S
from deen.runtime.gallery import DEFAULT_GALLERY_THRESHOLD
from deen.runtime.identity import RelinkSettings
from deen.runtime.matching import EmbeddingSettings, MatchingSettings
from deen.runtime.registration import ViewMapSettings
from deen.runtime.sources import SourceSettings
from deen.runtime.tracking import TrackingSettings
from deen.settings import Section, SettingError, setting

__all__ = ["GallerySettings", "LiveSettings", "ModelSettings", "OutputSettings", "RunSettings",
           "WebSettings"]


@dataclass(frozen=True)
class ModelSettings(Section):
    """The re-identification model and where it runs."""

    path: str = setting("", "the re-identification model: a checkpoint, an export or a "
                            "served model")
    device: str = setting("", "where it runs: cpu or cuda (OpenVINO: CPU, GPU, AUTO, …); "
                              "empty: automatic")
    flip: bool = setting(True, "a checkpoint: average over the crop's horizontal flip (an "
                               "export keeps the setting it was made with)")
    a: float = setting(-1.0, "a checkpoint: weight the pool parts by sqrt(a) and the BN-neck "
                             "parts by sqrt(1-a); -1: equal weights")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.a != -1 and not 0 <= self.a <= 1:
            raise SettingError("a", self.a, "must be -1 (equal weights) or lie in [0, 1]")


@dataclass(frozen=True)
class GallerySettings(Section):
    """Naming tracks from enrolled people (``deen gallery add``)."""

    path: str = setting("", "a SQLite gallery file or a postgresql:// URL shared by a site; "
                            "empty: no names")
    threshold: float = setting(DEFAULT_GALLERY_THRESHOLD, "least similarity to name a track",
                               at_least=-1.0, at_most=1.0)
    refresh_s: float = setting(1.0, "how often enrolments made elsewhere are picked up, "
                                    "seconds", above=0.0)


@dataclass(frozen=True)
class OutputSettings(Section):
    """Where the run's results go."""

    events: tuple[str, ...] = setting(("-",), "event targets: JSON-lines files, - (stdout), "
                                              "mqtt[s]:// brokers; empty: none")
    site_name: str = setting("", "this box's name in broker topics (empty: the host name)")
    video_out: str = setting("", "write the annotated side-by-side view to this .mp4")
    show: bool = setting(False, "show the annotated view in a window")
    tracks_out: str = setting("", "a folder for each stream's tracks and the matches, for "
                                  "deen score")
    serve: str = setting("", "HOST:PORT of the operator's web view (empty: off)")
    status_every_s: float = setting(5.0, "status line period, seconds (0: none)", at_least=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        for target in self.events:
            try:
                if sink_format(target).kind is SinkKind.MQTT:
                    MqttTarget.parse(target, "events", files_exist=False)  # the URL's form
            except ParameterError as exc:
                raise SettingError("events", exc.value, exc.problem) from None
        if self.video_out and Path(self.video_out).suffix.lower() != ".mp4":
            raise SettingError("video_out", self.video_out,
                               "must end in .mp4 (the annotated view is written as MPEG-4)")


@dataclass(frozen=True)
class WebSettings(Section):
    """Who may watch the operator's web view (:mod:`deen.runtime.web_access`). On loopback it
    is open unless a token is given; on any other address a token is required: from
    ``token_file``, else ``$DEEN_WEB_TOKEN`` or the file ``$DEEN_WEB_TOKEN_FILE``, else one
    generated once and kept, readable by its owner only."""

    token_file: str = setting("", "a file holding the login token (readable by its owner "
                                  "only); empty: the environment or a generated one")
    tls_cert: str = setting("", "serve the web view over HTTPS: the certificate (PEM)")
    tls_key: str = setting("", "… and its private key (PEM)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.tls_cert) != bool(self.tls_key):
            given = "tls_cert" if self.tls_cert else "tls_key"
            raise SettingError(given, getattr(self, given), "HTTPS needs both a certificate "
                               "and a key ({tls_cert} and {tls_key})", ("tls_cert", "tls_key"))

    @property
    def tls(self) -> tuple[str, str] | None:
        return (self.tls_cert, self.tls_key) if self.tls_cert else None


@dataclass(frozen=True)
class RunSettings(Section):
    """How long the run lasts and when it gives up."""

    duration_s: float = setting(0.0, "stop after this many seconds (0: when the streams end, "
                                     "or Ctrl-C)", at_least=0.0)
    fail_after_s: float = setting(DEFAULT_FAIL_AFTER_S, "end the run when detection, embedding "
                                  "or an output has failed on every call this long (0: never)",
                                  at_least=0.0)


@dataclass(frozen=True)
class LiveSettings(Section):
    """Everything ``deen run`` can be told, as one tree."""

    sources: SourceSettings = field(default_factory=SourceSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    view_map: ViewMapSettings = field(default_factory=ViewMapSettings)
    matching: MatchingSettings = field(default_factory=MatchingSettings)
    relink: RelinkSettings = field(default_factory=RelinkSettings)
    gallery: GallerySettings = field(default_factory=GallerySettings)
    outputs: OutputSettings = field(default_factory=OutputSettings)
    web: WebSettings = field(default_factory=WebSettings)
    run: RunSettings = field(default_factory=RunSettings)
