"""Price estimates over HTTP: ``service`` finds a job's neighbours through the search service
and prices it with ``handwerk.pricing`` (the arithmetic, shared with ``handwerk eval``)."""
