//! `netmit top`: a live view of one host's interfaces, NAPI instances and RX queues,
//! refreshed every interval (model.rs computes the table; this file reads keys and draws
//! it with ratatui). Keys: q, Esc or Ctrl-C quit; s cycles the sort column; r re-reads
//! now; / edits the interface filter (Enter or Esc ends). The terminal is restored on
//! every exit path, also on an error or a panic. `--once` prints one frame as text and
//! needs no terminal.

mod model;

use std::{
    io::{self, Write},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Args;
use netmit_user::{
    signals::NapiPollSource,
    sys::{IfName, Netdev},
};
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Paragraph, Row, Table},
};

use crate::args::parse_secs;
use model::{Frame, HEADER, Reading, SortKey, View};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Interface (default: every interface netmit is attached to in this namespace, and
    /// the daemon's).
    pub iface: Option<IfName>,
    /// Refresh interval, e.g. 1, 0.5 or 500ms.
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    pub interval: Duration,
    /// Sort interfaces by this column (the `s` key cycles).
    #[arg(long, value_enum, default_value = "name")]
    pub sort: SortKey,
    /// Show only interfaces whose name contains this (the `/` key edits it).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Print one frame (rates over one interval) as text and exit: no terminal needed.
    #[arg(long)]
    pub once: bool,
}

pub fn run(args: TopArgs) -> anyhow::Result<()> {
    let dev = args.iface.as_ref().map(Netdev::resolve).transpose()?;
    // Polls per NAPI need the napi_poll tracepoint program; without it (no root, no BTF)
    // the view still shows everything else.
    let source = match NapiPollSource::open() {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "NAPI poll counters unavailable: {}",
                netmit_user::error::chain(&e)
            );
            None
        }
    };
    let mut view = View {
        sort: args.sort,
        filter: args.filter.clone(),
    };
    if args.once {
        let first = Reading::take(dev.as_ref(), source.as_ref())?;
        std::thread::sleep(args.interval);
        let second = Reading::take(dev.as_ref(), source.as_ref())?;
        let text = model::render_text(&model::frame(&first, &second, &view));
        return crate::output::print(&text);
    }
    let mut terminal = TerminalGuard::enter()?;
    let mut before = Reading::take(dev.as_ref(), source.as_ref())?;
    let mut frame = Frame {
        title: "netmit top: reading...".into(),
        ..Frame::default()
    };
    let mut editing = false;
    let mut next = Instant::now() + args.interval;
    loop {
        terminal.draw(&frame, &view, editing)?;
        let timeout = next.saturating_duration_since(Instant::now());
        let mut refresh = timeout.is_zero();
        if !refresh
            && event::poll(timeout).context("reading the terminal")?
            && let Event::Key(key) = event::read().context("reading the terminal")?
        {
            {
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                let ctrl_c =
                    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
                if editing {
                    match key.code {
                        _ if ctrl_c => return Ok(()),
                        KeyCode::Enter | KeyCode::Esc => editing = false,
                        KeyCode::Backspace => drop(view.filter.pop()),
                        KeyCode::Char(c) => view.filter.push(c),
                        _ => {}
                    }
                } else {
                    match key.code {
                        _ if ctrl_c => return Ok(()),
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('s') => view.sort = view.sort.next(),
                        KeyCode::Char('/') => editing = true,
                        KeyCode::Char('r') => refresh = true,
                        _ => {}
                    }
                }
                if !refresh {
                    // Re-sort and re-filter what was read last, without reading again.
                    if let Some(last) = terminal.last.take() {
                        frame = model::frame(&last.0, &last.1, &view);
                        terminal.last = Some(last);
                    }
                    continue;
                }
            }
        }
        if refresh || Instant::now() >= next {
            let after = Reading::take(dev.as_ref(), source.as_ref())?;
            frame = model::frame(&before, &after, &view);
            terminal.last = Some((before, after.clone()));
            before = after;
            next = Instant::now() + args.interval;
        }
    }
}

/// Raw mode and the alternate screen for as long as it lives.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<io::Stdout>>,
    last: Option<(Reading, Reading)>,
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<TerminalGuard> {
        enable_raw_mode().context("netmit top needs a terminal (use --once for text)")?;
        // A panic must not leave the terminal raw.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            hook(info);
        }));
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen) {
            restore();
            return Err(e).context("switching to the alternate screen");
        }
        let terminal = Terminal::new(CrosstermBackend::new(out)).context("opening the terminal")?;
        Ok(TerminalGuard {
            terminal,
            last: None,
        })
    }

    fn draw(&mut self, frame: &Frame, view: &View, editing: bool) -> anyhow::Result<()> {
        let help = if editing {
            format!("filter: {}_   (Enter/Esc: done)", view.filter)
        } else {
            "q quit  s sort  / filter  r refresh".to_string()
        };
        self.terminal
            .draw(|f| {
                let [title, table, keys] = Layout::vertical([
                    Constraint::Length(2),
                    Constraint::Min(1),
                    Constraint::Length(1),
                ])
                .areas(f.area());
                f.render_widget(
                    Paragraph::new(frame.title.as_str())
                        .wrap(ratatui::widgets::Wrap { trim: true }),
                    title,
                );
                let widths = widths(frame);
                let rows = frame.rows.iter().map(|r| {
                    let row = Row::new(r.iter().map(String::as_str));
                    if r[0].starts_with(' ') {
                        row
                    } else {
                        row.style(Style::new().add_modifier(Modifier::BOLD))
                    }
                });
                let header = Row::new(HEADER).style(Style::new().add_modifier(Modifier::REVERSED));
                f.render_widget(Table::new(rows, widths).header(header), table);
                f.render_widget(Line::from(help), keys);
            })
            .context("drawing")?;
        Ok(())
    }
}

fn widths(frame: &Frame) -> Vec<Constraint> {
    (0..HEADER.len())
        .map(|i| {
            let w = frame
                .rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([HEADER[i].len()])
                .max()
                .unwrap_or(4);
            if i == HEADER.len() - 1 {
                Constraint::Min(w as u16)
            } else {
                Constraint::Length(w as u16)
            }
        })
        .collect()
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen);
    let _ = io::stdout().flush();
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}
