"""The Work Guide's web pages (/ui): templates, a stylesheet and htmx, served by assignment."""
