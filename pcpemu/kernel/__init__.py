"""The kernel's rules and formats: config, gfp, watermarks, pcp lists, versions, layout, /proc and ftrace text."""
