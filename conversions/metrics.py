"""Conversion metrics: upload outcomes counted in code; success rate and backlog read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# outcome: uploaded, duplicate (already at the platform), rejected, retry, auth_error, failed, expired.
CONVERSION_UPLOADS = Counter(
    "ads_conversion_uploads",
    "Conversions by platform and upload outcome.",
    ("platform", "outcome"),
)


class ConversionUploadCollector(Collector):
    """The seed's upload success rate and the oldest waiting conversion, from the ledger itself."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # Imported here: metrics is imported by services, selectors by this collector only.
        from conversions import selectors

        rate = GaugeMetricFamily(
            "ads_conversion_upload_success_ratio",
            "Uploaded / finished (uploaded, rejected, failed, expired) over the last 24 hours.",
            labels=("platform",),
        )
        for platform, value in sorted(selectors.upload_success_rate().items()):
            rate.add_metric([platform], value)
        yield rate
        age = GaugeMetricFamily(
            "ads_conversion_oldest_pending_age_seconds",
            "Age of the oldest conversion not yet uploaded (pending or uploading); 0 when none.",
            labels=("platform",),
        )
        oldest = selectors.oldest_pending_age_seconds()
        for platform in ("google", "meta"):
            age.add_metric([platform], oldest.get(platform, 0.0))
        yield age


SCRAPE_COLLECTORS = (ConversionUploadCollector,)
