"""Where prepared datasets come from: bundled samples, Debian wallpaper photos, folders on disk, downloads."""
