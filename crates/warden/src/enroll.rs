//! Showing a TOTP enrollment once: the otpauth:// URI, a QR code in the terminal, and
//! optionally a PNG (for `init` and `user add` / `user enroll-totp`).

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::json;
use warden_core::fsx;
use warden_core::totp::KeyUri;

use crate::cli::EnrollOutput;

pub fn enrollment_json(uri: &KeyUri) -> serde_json::Value {
    let params = uri.params();
    json!({
        "uri": uri.to_uri().expose_secret(),
        "issuer": uri.issuer(),
        "account": uri.account(),
        "algorithm": params.algorithm.name(),
        "digits": params.digits.count(),
        "period_secs": params.period_secs.secs(),
    })
}

/// The URI (and a QR code unless `--no-qr`) on standard output: shown once, then only the
/// authenticator app has it.
pub fn show_enrollment(uri: &KeyUri, output: &EnrollOutput, heading: bool) -> Result<()> {
    let text = uri.to_uri();
    let params = uri.params();
    let mut out = std::io::stdout().lock();
    if heading {
        writeln!(out, "TOTP enrolled for {}", uri.account())?;
    }
    writeln!(
        out,
        "Scan the QR code or enter the URI in an authenticator app ({}, {} digits, {} s). \
         It is shown only now.",
        params.algorithm,
        params.digits.count(),
        params.period_secs.secs()
    )?;
    writeln!(out, "{}", text.expose_secret())?;
    if !output.no_qr {
        writeln!(out, "{}", qr_terminal(text.expose_secret())?)?;
    }
    drop(out);
    write_qr_png(Some(uri), output)
}

/// The QR code in Unicode half blocks, two modules per character cell (light on dark, as most
/// terminals are; scanners read both).
fn qr_terminal(text: &str) -> Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).context("cannot draw the QR code")?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

pub fn write_qr_png(uri: Option<&KeyUri>, output: &EnrollOutput) -> Result<()> {
    let (Some(uri), Some(path)) = (uri, &output.qr_png) else {
        return Ok(());
    };
    let text = uri.to_uri();
    let png = qr_png(text.expose_secret())?;
    let mut file = fsx::create_private_new(path)?;
    file.write_all(&png)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("QR code written to {} (0600)", path.display());
    Ok(())
}

/// A black-on-white grayscale PNG, 8 pixels per module, with the 4-module quiet zone.
pub fn qr_png(text: &str) -> Result<Vec<u8>> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let code = qrcode::QrCode::new(text.as_bytes()).context("cannot draw the QR code")?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (index % modules, index / modules);
        for dy in 0..SCALE {
            let row = (my + QUIET) * SCALE + dy;
            let start = row * side + (mx + QUIET) * SCALE;
            pixels[start..start + SCALE].fill(0);
        }
    }
    let side32 = u32::try_from(side).context("QR code too large")?;
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, side32, side32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("PNG header")?;
    writer.write_image_data(&pixels).context("PNG data")?;
    writer.finish().context("PNG end")?;
    Ok(png)
}
