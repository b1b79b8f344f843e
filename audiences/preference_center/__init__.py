"""The preference center: ``/preferences/<signed token>/``, the end user's own page.

No login: the signed link (``audiences.preference_links``) is the credential. The
package holds the views and their URLs, the form, the page's one-query read
(``selectors``), the writes the page makes (``services``), the bad-token throttle
(``throttle``), the security headers (``security``), the time-zone and language pickers
(``pickers``) and the per-language template engines (``rendering``,
``template_library``). Templates live in ``templates/preferences/``, assets in
``static/preferences/``, translations in ``locale/``.

Rules the views keep: GET never changes anything (link scanners and prefetchers open
links); every change is a POST with CSRF protection that appends consent records
through ``audiences.services.preferences.subscriber_update_preferences`` with source
``preference_center``; a tampered, expired or unknown link — or one of an erased
subscriber — gets one generic page with one status, and writes nothing.
"""
